//! Folding a streamed model answer, one server-sent event at a time, for both APIs an `openai`
//! backend speaks. Pure: each frame's data goes in, what it means comes out, so hostile and
//! malformed streams are tested without a server.

use super::super::BackendError;
use crate::config::OpenaiApi;
use serde_json::Value;

/// The most answer text kept; a server that streams more is cut off there (the card shows less).
pub const MAX_ANSWER_CHARS: usize = 100_000;

/// What a frame means for the turn.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Nothing to show (yet).
    Continue,
    /// A milestone for the status message.
    Milestone(&'static str),
    /// The answer is complete.
    Done,
}

/// The answer so far.
#[derive(Debug, Default)]
pub struct Answer {
    pub text: String,
    /// The Responses API's id for this response: a follow-up continues from it.
    pub response_id: Option<String>,
    pub truncated: bool,
    /// Why the answer stopped early, when the server says (`max_output_tokens`, `content_filter`).
    pub cut_short: Option<String>,
    /// The tokens the server says the turn used.
    pub usage: Option<crate::backend::Usage>,
    writing: bool,
}

impl Answer {
    /// Takes one frame's `data`. An error frame, or a terminal failure, is the turn's error.
    pub fn feed(&mut self, api: OpenaiApi, data: &str) -> Result<Step, BackendError> {
        let data = data.trim();
        if data == "[DONE]" {
            return Ok(Step::Done);
        }
        let v: Value = serde_json::from_str(data).map_err(|e| {
            BackendError::Failed(format!("the model server sent an unreadable event: {e}"))
        })?;
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            return Err(failed("the model server reported an error", err));
        }
        match api {
            OpenaiApi::Responses => self.responses(&v),
            OpenaiApi::Chat => Ok(self.chat(&v)),
        }
    }

    fn responses(&mut self, v: &Value) -> Result<Step, BackendError> {
        let kind = v["type"].as_str().unwrap_or_default();
        match kind {
            "response.created" | "response.in_progress" => {
                self.remember_id(&v["response"]);
                Ok(Step::Milestone("The model is working on it"))
            }
            "response.output_item.added" if v["item"]["type"] == "reasoning" => {
                Ok(Step::Milestone("The model is thinking"))
            }
            "response.output_text.delta" => Ok(self.append(v["delta"].as_str().unwrap_or(""))),
            "response.completed" => {
                self.remember_id(&v["response"]);
                self.remember_usage(&v["response"]["usage"], "input_tokens", "output_tokens");
                if self.text.is_empty() {
                    // A server that sends no deltas still puts the text in the final response.
                    let text = output_text(&v["response"]);
                    self.append(&text);
                }
                Ok(Step::Done)
            }
            "response.incomplete" => {
                self.remember_id(&v["response"]);
                self.remember_usage(&v["response"]["usage"], "input_tokens", "output_tokens");
                let why = v["response"]["incomplete_details"]["reason"]
                    .as_str()
                    .unwrap_or("unknown")
                    .to_string();
                if self.text.is_empty() {
                    return Err(BackendError::Failed(format!(
                        "the model stopped before answering ({})",
                        clip(&why)
                    )));
                }
                self.cut_short = Some(why);
                Ok(Step::Done)
            }
            "response.failed" => Err(failed("the model failed", &v["response"]["error"])),
            "error" => Err(failed("the model server reported an error", v)),
            // Other events (and types added later) change nothing here.
            _ => Ok(Step::Continue),
        }
    }

    fn chat(&mut self, v: &Value) -> Step {
        self.remember_usage(&v["usage"], "prompt_tokens", "completion_tokens");
        let Some(choice) = v["choices"].get(0) else {
            // The usage chunk, or a keep-alive.
            return Step::Continue;
        };
        let step = self.append(choice["delta"]["content"].as_str().unwrap_or(""));
        match choice["finish_reason"].as_str() {
            Some("length") | Some("content_filter") => {
                self.cut_short = choice["finish_reason"].as_str().map(str::to_string);
                Step::Continue
            }
            _ => step,
        }
    }

    /// Keeps the usage a server reported; a missing or malformed count is not usage.
    fn remember_usage(&mut self, usage: &Value, input: &str, output: &str) {
        if let (Some(i), Some(o)) = (usage[input].as_u64(), usage[output].as_u64()) {
            self.usage = Some(crate::backend::Usage {
                input_tokens: i,
                output_tokens: o,
            });
        }
    }

    fn remember_id(&mut self, response: &Value) {
        if let Some(id) = response["id"].as_str().filter(|id| valid_id(id)) {
            self.response_id = Some(id.to_string());
        }
    }

    fn append(&mut self, delta: &str) -> Step {
        let room = MAX_ANSWER_CHARS.saturating_sub(self.text.chars().count());
        if delta.chars().count() > room {
            self.truncated = true;
        }
        self.text.extend(delta.chars().take(room));
        if !delta.is_empty() && !self.writing {
            self.writing = true;
            return Step::Milestone("Writing the answer");
        }
        Step::Continue
    }
}

/// The text of a final Responses object: its message items' `output_text` parts, in order.
fn output_text(response: &Value) -> String {
    let mut text = String::new();
    for item in response["output"].as_array().into_iter().flatten() {
        for part in item["content"].as_array().into_iter().flatten() {
            if part["type"] == "output_text" {
                text.push_str(part["text"].as_str().unwrap_or(""));
            }
        }
    }
    text
}

/// A response id Chime will send back: short, and only the characters ids are made of.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

fn clip(s: &str) -> String {
    s.chars().take(300).collect()
}

fn failed(what: &str, err: &Value) -> BackendError {
    let message = err["message"]
        .as_str()
        .or_else(|| err.as_str())
        .unwrap_or("no reason given");
    BackendError::Failed(format!("{what}: {}", clip(message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(api: OpenaiApi, frames: &[&str]) -> (Answer, Vec<Result<Step, String>>) {
        let mut a = Answer::default();
        let steps = frames
            .iter()
            .map(|f| a.feed(api, f).map_err(|e| e.to_string()))
            .collect();
        (a, steps)
    }

    #[test]
    fn a_responses_stream_folds_into_its_answer_and_id() {
        let (a, steps) = feed_all(
            OpenaiApi::Responses,
            &[
                r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","status":"in_progress"}}"#,
                r#"{"type":"response.output_text.delta","sequence_number":1,"item_id":"m","output_index":0,"content_index":0,"delta":"Hel"}"#,
                r#"{"type":"response.output_text.delta","sequence_number":2,"item_id":"m","output_index":0,"content_index":0,"delta":"lo"}"#,
                r#"{"type":"response.some_future_event","sequence_number":3}"#,
                r#"{"type":"response.completed","sequence_number":4,"response":{"id":"resp_1","status":"completed"}}"#,
            ],
        );
        assert_eq!(a.text, "Hello");
        assert_eq!(a.response_id.as_deref(), Some("resp_1"));
        assert_eq!(steps[1], Ok(Step::Milestone("Writing the answer")));
        assert_eq!(steps[2], Ok(Step::Continue));
        assert_eq!(steps[4], Ok(Step::Done));
    }

    #[test]
    fn a_final_response_without_deltas_still_has_its_text() {
        let (a, _) = feed_all(
            OpenaiApi::Responses,
            &[
                r#"{"type":"response.completed","response":{"id":"r2","output":[{"type":"reasoning"},{"type":"message","content":[{"type":"output_text","text":"All good."}]}]}}"#,
            ],
        );
        assert_eq!(a.text, "All good.");
    }

    #[test]
    fn failures_and_hostile_frames_are_errors_or_ignored_never_panics() {
        for (frame, want) in [
            (
                r#"{"type":"response.failed","response":{"error":{"code":"server_error","message":"boom"}}}"#,
                "the model failed: boom",
            ),
            (
                r#"{"type":"error","code":"rate_limit","message":"slow down"}"#,
                "slow down",
            ),
            (r#"{"error":{"message":"bad key"}}"#, "bad key"),
            (
                r#"{"type":"response.incomplete","response":{"incomplete_details":{"reason":"content_filter"}}}"#,
                "content_filter",
            ),
            ("not json", "unreadable"),
            ("", "unreadable"),
        ] {
            let mut a = Answer::default();
            let e = a.feed(OpenaiApi::Responses, frame).unwrap_err().to_string();
            assert!(e.contains(want), "{frame}: {e}");
        }
        let mut a = Answer::default();
        for frame in [
            r#"{"type":"response.output_text.delta","delta":42}"#,
            r#"{"type":"response.created","response":{"id":"../../etc\npasswd"}}"#,
            r#"[1,2,3]"#,
            r#"{"type":null}"#,
        ] {
            assert!(a.feed(OpenaiApi::Responses, frame).is_ok(), "{frame}");
        }
        assert_eq!(
            a.response_id, None,
            "an id that is not one is never sent back"
        );
        let long = format!(
            r#"{{"type":"response.output_text.delta","delta":"{}"}}"#,
            "x".repeat(MAX_ANSWER_CHARS + 10)
        );
        a.feed(OpenaiApi::Responses, &long).unwrap();
        assert!(a.truncated && a.text.chars().count() == MAX_ANSWER_CHARS);
    }

    #[test]
    fn a_chat_stream_folds_and_ends_on_done() {
        let (a, steps) = feed_all(
            OpenaiApi::Chat,
            &[
                r#"{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
                r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"Use "}}]}"#,
                r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"rustls."},"finish_reason":"length"}]}"#,
                r#"{"id":"c1","choices":[],"usage":{"total_tokens":9}}"#,
                "[DONE]",
            ],
        );
        assert_eq!(a.text, "Use rustls.");
        assert_eq!(a.cut_short.as_deref(), Some("length"));
        assert_eq!(steps[1], Ok(Step::Milestone("Writing the answer")));
        assert_eq!(steps[4], Ok(Step::Done));
        assert_eq!(a.response_id, None);
        // A usage chunk without both counts is not usage.
        assert_eq!(a.usage, None);
    }

    #[test]
    fn usage_is_read_from_both_apis() {
        let (a, _) = feed_all(
            OpenaiApi::Chat,
            &[
                r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"ok"}}]}"#,
                r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}"#,
                "[DONE]",
            ],
        );
        assert_eq!(
            a.usage,
            Some(crate::backend::Usage {
                input_tokens: 7,
                output_tokens: 3
            })
        );
        let (a, _) = feed_all(
            OpenaiApi::Responses,
            &[
                r#"{"type":"response.output_text.delta","delta":"ok"}"#,
                r#"{"type":"response.completed","response":{"id":"resp_1","usage":{"input_tokens":"many","output_tokens":-1}}}"#,
            ],
        );
        assert_eq!(a.usage, None, "hostile counts are not usage");
    }
}
