//! A stateful fake of Linear's GraphQL API and OAuth token endpoint, served by wiremock: it
//! records every operation with its variables and answers like Linear (an issue with its team's
//! workflow states, activities with the ids Chime gave them).

use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

#[derive(Clone, Debug)]
pub struct Op {
    /// The operation's name (`AgentActivityCreate`, `IssueContext`, …).
    pub name: String,
    pub variables: Value,
    pub authorization: String,
    pub at: Instant,
}

pub struct State {
    pub ops: Vec<Op>,
    /// What `IssueContext` answers as `issue`.
    pub issue: Value,
    /// Answer this many calls with Linear's RATELIMITED error first.
    pub rate_limit_next: usize,
    /// The OAuth token endpoint's form posts.
    pub token_requests: Vec<String>,
}

#[derive(Clone)]
pub struct FakeLinear {
    pub server: Arc<MockServer>,
    pub state: Arc<Mutex<State>>,
}

struct Graphql(Arc<Mutex<State>>);
struct Token(Arc<Mutex<State>>);

/// An unstarted issue of team ENG, whose workflow has two started states (the first by position
/// is `st-progress`), no delegate, and one comment.
pub fn default_issue() -> Value {
    json!({
        "id": "iss-1", "identifier": "ENG-123", "title": "Retry test flakes",
        "description": "The retry test fails one run in five.", "url": "https://linear.app/acme/issue/ENG-123",
        "state": {"id": "st-todo", "type": "unstarted"},
        "delegate": null,
        "team": {"id": "t1", "key": "ENG", "states": {"nodes": [
            {"id": "st-review", "name": "In Review", "type": "started", "position": 3},
            {"id": "st-todo", "name": "Todo", "type": "unstarted", "position": 1},
            {"id": "st-progress", "name": "In Progress", "type": "started", "position": 2},
            {"id": "st-done", "name": "Done", "type": "completed", "position": 4}
        ]}},
        "project": {"id": "p1", "name": "Reliability"},
        "labels": {"nodes": [{"name": "backend"}]},
        "comments": {"nodes": [
            {"body": "Seen on CI twice today.", "createdAt": "2026-11-30T08:00:00Z", "user": {"id": "u2", "name": "Grace"}}
        ]}
    })
}

impl FakeLinear {
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State {
            ops: vec![],
            issue: default_issue(),
            rate_limit_next: 0,
            token_requests: vec![],
        }));
        Mock::given(method("POST"))
            .and(path("/graphql"))
            .respond_with(Graphql(state.clone()))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/oauth/token"))
            .respond_with(Token(state.clone()))
            .mount(&server)
            .await;
        FakeLinear {
            server: Arc::new(server),
            state,
        }
    }

    pub fn api_url(&self) -> String {
        format!("{}/graphql", self.server.uri())
    }

    pub fn ops(&self, name: &str) -> Vec<Op> {
        let s = self.state.lock().unwrap();
        s.ops.iter().filter(|o| o.name == name).cloned().collect()
    }

    /// The activities sent, in order: (content type, body or parameter, signal).
    pub fn activities(&self) -> Vec<(String, String, Option<String>)> {
        self.ops("AgentActivityCreate")
            .iter()
            .map(|o| {
                let i = &o.variables["input"];
                let c = &i["content"];
                let text = c["body"]
                    .as_str()
                    .or(c["parameter"].as_str())
                    .unwrap_or_default();
                (
                    c["type"].as_str().unwrap_or_default().to_string(),
                    text.to_string(),
                    i["signal"].as_str().map(str::to_string),
                )
            })
            .collect()
    }
}

/// The fields of `AgentSessionUpdateInput` in Linear's schema (the developers' copy, when it is
/// there; otherwise the ones it had when this fake was written).
fn session_update_fields() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/linear/schema.graphql"
    );
    let from_schema = std::fs::read_to_string(path).ok().and_then(|text| {
        let start = text.find("input AgentSessionUpdateInput {")?;
        let body = &text[start..];
        let body = &body[..body.find("\n}")?];
        let fields: Vec<String> = body
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                let (name, _) = l.split_once(':')?;
                (!name.contains(' ') && !name.starts_with('"')).then(|| name.to_string())
            })
            .collect();
        (!fields.is_empty()).then_some(fields)
    });
    from_schema.unwrap_or_else(|| {
        [
            "addedExternalUrls",
            "dismissedAt",
            "externalLink",
            "externalUrls",
            "plan",
            "removedExternalUrls",
            "userState",
        ]
        .map(String::from)
        .to_vec()
    })
}

/// What Linear checks of `agentSessionUpdate`'s input: fields of the schema's input type, and a
/// plan that is a list of steps `{content, status}` with a known status.
fn check_session_update(input: &Value) -> Result<(), String> {
    let fields = session_update_fields();
    let input = input.as_object().ok_or("input is not an object")?;
    for key in input.keys() {
        if !fields.contains(key) {
            return Err(format!("unknown field {key} of AgentSessionUpdateInput"));
        }
    }
    if let Some(plan) = input.get("plan") {
        let steps = plan.as_array().ok_or("plan is not a list of steps")?;
        for step in steps {
            let step = step.as_object().ok_or("a plan step is not an object")?;
            let content = step.get("content").and_then(Value::as_str);
            let status = step
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if step.len() != 2 || content.is_none_or(str::is_empty) {
                return Err(format!("a plan step must be {{content, status}}: {step:?}"));
            }
            if !["pending", "inProgress", "completed", "canceled"].contains(&status) {
                return Err(format!("unknown plan step status {status:?}"));
            }
        }
    }
    Ok(())
}

fn op_name(query: &str) -> String {
    query
        .split_whitespace()
        .skip_while(|w| *w != "mutation" && *w != "query")
        .nth(1)
        .unwrap_or("?")
        .split('(')
        .next()
        .unwrap_or("?")
        .to_string()
}

impl Respond for Graphql {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let name = op_name(body["query"].as_str().unwrap_or_default());
        let mut s = self.0.lock().unwrap();
        if s.rate_limit_next > 0 {
            s.rate_limit_next -= 1;
            return ResponseTemplate::new(400).set_body_json(json!({
                "errors": [{"message": "Rate limit exceeded", "extensions": {"code": "RATELIMITED"}}]
            }));
        }
        s.ops.push(Op {
            name: name.clone(),
            variables: body["variables"].clone(),
            authorization: req
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
            at: Instant::now(),
        });
        let data = match name.as_str() {
            "AgentActivityCreate" => json!({"agentActivityCreate": {"success": true,
                "agentActivity": {"id": body["variables"]["input"]["id"]}}}),
            "AgentSessionUpdate" => match check_session_update(&body["variables"]["input"]) {
                Ok(()) => json!({"agentSessionUpdate": {"success": true}}),
                Err(why) => {
                    return ResponseTemplate::new(400).set_body_json(json!({"errors": [{
                        "message": format!("Argument Validation Error: {why}"),
                        "extensions": {"code": "INVALID_INPUT"}
                    }]}))
                }
            },
            "IssueContext" => json!({"issue": s.issue}),
            "IssueUpdate" => json!({"issueUpdate": {"success": true}}),
            "CommentCreate" => {
                json!({"commentCreate": {"success": true, "comment": {"id": "cm-1"}}})
            }
            // Everyone is at acme.dev, except outsiders.
            "UserEmail" => {
                let id = body["variables"]["id"].as_str().unwrap_or_default();
                let email = if id.starts_with("outsider") {
                    format!("{id}@outside.dev")
                } else {
                    format!("{id}@acme.dev")
                };
                json!({"user": {"id": id, "name": id, "email": email}})
            }
            "UsersByEmail" => json!({"users": {"nodes": []}}),
            "Viewer" => json!({"viewer": {"id": "app-user", "name": "Chime",
                "organization": {"id": "org-1", "name": "Acme"}}}),
            _ => {
                return ResponseTemplate::new(400).set_body_json(
                    json!({"errors": [{"message": format!("unknown operation {name}")}]}),
                )
            }
        };
        ResponseTemplate::new(200).set_body_json(json!({ "data": data }))
    }
}

impl Respond for Token {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let form = String::from_utf8_lossy(&req.body).to_string();
        let good = form.contains("code=good-code");
        self.0.lock().unwrap().token_requests.push(form);
        if good {
            ResponseTemplate::new(200).set_body_json(
                json!({"access_token": "lin_oauth_installed", "token_type": "Bearer"}),
            )
        } else {
            ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"}))
        }
    }
}
