//! The causal replay itself: messages fed in time order, each judged with only what came before
//! it. A bot alert that could be offered waits out its grace window and is decided when the
//! window ends, so only those alerts are remembered beyond the message being judged.

use super::threads::Threads;
use super::Input;
use crate::policy::judge::{self, Decision, Facts, Memory, Message, ThreadState};
use crate::policy::Policy;
use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// The judge's view of inputs: threads are named `channel/ts`, as the judge names them; the
/// names are built in buffers reused from message to message.
#[derive(Default)]
struct Keys {
    id: String,
    root: String,
}

impl Keys {
    fn message<'k>(&'k mut self, m: &'k Input, at_ms: i64) -> Message<'k> {
        let key = |buf: &mut String, ts: &str| {
            buf.clear();
            buf.push_str(&m.channel);
            buf.push('/');
            buf.push_str(ts);
        };
        key(&mut self.id, &m.ts);
        let reply_to = m.thread_ts.as_deref().filter(|t| *t != m.ts);
        if let Some(t) = reply_to {
            key(&mut self.root, t);
        }
        Message {
            id: &self.id,
            place: &m.channel,
            place_name: &m.channel_name,
            author: &m.user,
            author_is_bot: m.user_is_bot,
            at_ms,
            thread: reply_to.map(|_| self.root.as_str()),
            text: &m.text,
            mentions_chime: m.mentions_chime(),
            from_chime: m.user_is_bot && m.user.eq_ignore_ascii_case("chime"),
        }
    }
}

/// An alert decided when its grace window ended: its input index and id, and the decision.
pub(super) type Late = (usize, String, Decision);

/// The timestamp of the thread `m` is in (its own when it starts one), as `Keys` names it.
fn root_ts<'a>(m: &'a Input) -> &'a str {
    m.thread_ts.as_deref().unwrap_or(&m.ts)
}

pub(super) struct Replayer<'p> {
    policy: &'p Policy,
    ignore_budgets: bool,
    /// Only threads something was observed in: a missing one reads as the default state.
    threads: Threads,
    memory: Memory,
    /// Alerts waiting for their grace window to end: (deadline, input index), and their inputs
    /// (owned: the line they were read from is gone by then).
    pending: BinaryHeap<Reverse<(i64, usize)>>,
    waiting: FxHashMap<usize, Input<'static>>,
    keys: Keys,
    late_keys: Keys,
}

impl<'p> Replayer<'p> {
    pub fn new(policy: &'p Policy, ignore_budgets: bool) -> Self {
        Self {
            policy,
            ignore_budgets,
            threads: Threads::default(),
            memory: Memory::default(),
            pending: BinaryHeap::new(),
            waiting: FxHashMap::default(),
            keys: Keys::default(),
            late_keys: Keys::default(),
        }
    }

    /// Judges input number `index`, written at `at_ms`. Inputs must come in time order, ties in
    /// input order. The alerts whose grace windows ended by then are decided first, into
    /// `late`. Returns the input's decision, or None when it is an alert that waits.
    pub fn push(
        &mut self,
        index: usize,
        input: &Input,
        at_ms: i64,
        late: &mut Vec<Late>,
    ) -> Option<Decision> {
        self.decide_due(Some(at_ms), late);
        let policy = self.policy;
        let m = self.keys.message(input, at_ms);
        if m.mentions_chime && !m.author_is_bot {
            self.memory.users.insert(m.author.to_string());
        }
        let facts = Facts::new(policy, &m);
        let grace = facts
            .scope()
            .as_ref()
            .ok()
            .filter(|s| s.bots && m.author_is_bot && m.thread.is_none())
            .map(|s| (s.grace_minutes * 60_000.0) as i64)
            .filter(|g| *g > 0);
        let root_ts = root_ts(input);
        let known = self.threads.get_mut(&input.channel, root_ts);
        let mut state = known.as_deref().cloned().unwrap_or_default();
        let relevant = judge::relevance_known(&facts, &state, &self.memory);
        let decision = match grace {
            // An alert that could be offered waits for people first.
            Some(g) if relevant.suggests() => {
                self.pending.push(Reverse((m.at_ms + g, index)));
                self.waiting.insert(index, input.to_static());
                None
            }
            _ => Some(judge::within_budgets(
                &facts,
                relevant,
                &mut self.memory,
                self.ignore_budgets,
            )),
        };
        judge::observe_known(&mut state, &facts);
        match known {
            Some(s) => *s = state,
            None if state != ThreadState::default() => {
                self.threads.insert(&input.channel, root_ts, state);
            }
            None => {}
        }
        decision
    }

    /// Decides the alerts still waiting, at the ends of their windows.
    pub fn finish(&mut self, late: &mut Vec<Late>) {
        self.decide_due(None, late);
    }

    /// Decides the waiting alerts whose windows end by `now` (all of them when None).
    fn decide_due(&mut self, now: Option<i64>, late: &mut Vec<Late>) {
        while let Some(&Reverse((deadline, i))) = self.pending.peek() {
            if now.is_some_and(|now| deadline > now) {
                break;
            }
            self.pending.pop();
            let input = self.waiting.remove(&i).expect("a pending alert is waiting");
            let m = self.late_keys.message(&input, deadline);
            let state = self
                .threads
                .get_mut(&input.channel, root_ts(&input))
                .map_or_else(ThreadState::default, |s| s.clone());
            let mut d = judge::decide(
                self.policy,
                &m,
                &state,
                &mut self.memory,
                self.ignore_budgets,
            );
            d.reasons.push("decided when its grace window ended".into());
            late.push((i, input.id.into_owned(), d));
        }
    }
}
