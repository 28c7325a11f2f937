//! The decision: for one message, with what its thread said before it and what Chime already
//! offered, suggest one action or stay quiet, and say why. A pure function of Chime's own types,
//! so Slack, the playground, replay (and later Linear and the IDE) are judged by the same code.

use super::{Policy, Scan, ScopeFile};
use serde::Serialize;
use std::borrow::Cow;
use std::cell::OnceCell;

/// One reason for a decision.
pub type Reason = Cow<'static, str>;
// FxHash: the keys are short and few, and replay looks them up for every message that scores.
type HashMap<K, V> = rustc_hash::FxHashMap<K, V>;
type HashSet<K> = rustc_hash::FxHashSet<K>;

/// One message, as every surface's connector can describe it.
#[derive(Clone, Debug)]
pub struct Message<'a> {
    pub id: &'a str,
    /// The channel (or later Linear team, IDE workspace) it was written in.
    pub place: &'a str,
    pub place_name: &'a str,
    pub author: &'a str,
    pub author_is_bot: bool,
    /// When it was written, in Unix milliseconds.
    pub at_ms: i64,
    /// The root of its thread, when it is a reply.
    pub thread: Option<&'a str>,
    pub text: &'a str,
    /// It @-mentions Chime: the mention path handles it, never a suggestion.
    pub mentions_chime: bool,
    /// Chime wrote it.
    pub from_chime: bool,
}

impl Message<'_> {
    /// The thread it belongs to (its own id when it starts one).
    pub fn root(&self) -> &str {
        self.thread.unwrap_or(self.id)
    }
}

/// What the judge works out about a message once, however many steps of its judgement ask
/// (whether it waits, relevance, budgets, observing its thread): the scope its place falls in,
/// and what the policy's "already handled" and injection patterns find in its text.
pub struct Facts<'a, 'p> {
    policy: &'p Policy,
    m: &'a Message<'a>,
    scope: OnceCell<Result<&'p ScopeFile, String>>,
    scan: OnceCell<Scan>,
}

impl<'a, 'p> Facts<'a, 'p> {
    pub fn new(policy: &'p Policy, m: &'a Message<'a>) -> Self {
        Self {
            policy,
            m,
            scope: OnceCell::new(),
            scan: OnceCell::new(),
        }
    }

    /// [`scope_of`] the message.
    pub fn scope(&self) -> &Result<&'p ScopeFile, String> {
        self.scope.get_or_init(|| scope_of(self.policy, self.m))
    }

    fn scan(&self) -> &Scan {
        self.scan.get_or_init(|| self.policy.scan(self.m.text))
    }
}

/// What a thread said so far, as far as the policy cares.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ThreadState {
    /// Replies from people (not bots, not Chime) after the root.
    pub human_replies: u32,
    pub claimed: bool,
    pub answered: bool,
    pub resolved: bool,
}

/// What Chime remembers across messages: what it offered, to whom, and what people said back.
#[derive(Clone, Debug, Default)]
pub struct Memory {
    pub per_thread: HashMap<String, u32>,
    /// (place, day) → offers.
    pub per_place_day: HashMap<(String, i64), u32>,
    /// (person, day) → offers.
    pub per_person_day: HashMap<(String, i64), u32>,
    pub last_offer_in_place: HashMap<String, i64>,
    /// People who have asked Chime for something.
    pub users: HashSet<String>,
    /// (place, action kind) muted with "Don't suggest this here".
    pub muted: HashSet<(String, String)>,
    /// People who asked for no suggestions for now (`/chime mute`).
    pub muted_people: HashSet<String>,
    /// Threshold moves learnt from feedback, per (place, kind).
    pub threshold_shift: HashMap<(String, String), f64>,
    /// A key reused to look budgets up, so checking them copies no string.
    key: (String, i64),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    pub decision: &'static str,
    pub action: Option<String>,
    /// The button's text, when it suggests.
    #[serde(skip)]
    pub button: Option<String>,
    pub score: f64,
    /// Why, in words; mostly fixed phrases, so they are not allocated per message.
    pub reasons: Vec<Reason>,
}

impl Decision {
    fn quiet(score: f64, reasons: Vec<Reason>) -> Self {
        Self {
            decision: "quiet",
            action: None,
            button: None,
            score,
            reasons,
        }
    }

    pub fn suggests(&self) -> bool {
        self.decision == "suggest"
    }
}

/// A relevance judgement before it is a [`Decision`]: the action it suggests is named by its
/// index in the policy, so one that budgets then refuse (most, in a busy channel) never copies
/// the action's name and button.
pub struct Relevance {
    action: Option<usize>,
    score: f64,
    reasons: Vec<Reason>,
}

impl Relevance {
    fn quiet(score: f64, reasons: Vec<Reason>) -> Self {
        Self {
            action: None,
            score,
            reasons,
        }
    }

    pub fn suggests(&self) -> bool {
        self.action.is_some()
    }

    /// A judgement made elsewhere (an editor's signal) that action `action` fits, for
    /// [`within_budgets`] to weigh.
    pub(crate) fn of_action(action: usize, score: f64, reasons: Vec<Reason>) -> Self {
        Self {
            action: Some(action),
            score,
            reasons,
        }
    }

    fn decision(self, policy: &Policy) -> Decision {
        match self.action {
            Some(a) => Decision {
                decision: "suggest",
                action: Some(policy.actions[a].kind.clone()),
                button: Some(policy.actions[a].button.clone()),
                score: self.score,
                reasons: self.reasons,
            },
            None => Decision::quiet(self.score, self.reasons),
        }
    }
}

/// The scope a message's place falls in: the first that covers it. None when none does, or when
/// a scope says never to speak there.
pub fn scope_of<'p>(policy: &'p Policy, m: &Message) -> Result<&'p ScopeFile, String> {
    let names = |list: &[String]| {
        list.iter()
            .any(|p| p == "*" || p == m.place || p.trim_start_matches('#') == m.place_name)
    };
    if let Some(s) = policy.file.scopes.iter().find(|s| {
        s.never
            .iter()
            .any(|p| p == m.place || p.trim_start_matches('#') == m.place_name)
    }) {
        return Err(format!("scope {:?} never speaks here", s.name));
    }
    policy
        .file
        .scopes
        .iter()
        .find(|s| names(&s.places))
        .ok_or_else(|| "no scope covers this place".to_string())
}

/// Updates a thread's state with one more message (after it was judged).
pub fn observe(policy: &Policy, state: &mut ThreadState, m: &Message) {
    observe_known(state, &Facts::new(policy, m));
}

/// [`observe`], with what is known of the message.
pub fn observe_known(state: &mut ThreadState, facts: &Facts) {
    let m = facts.m;
    if m.author_is_bot || m.from_chime {
        return;
    }
    if m.thread.is_some() {
        state.human_replies += 1;
    }
    let scan = facts.scan();
    state.claimed |= scan.claimed;
    state.answered |= m.thread.is_some() && scan.answered;
    state.resolved |= scan.resolved;
}

/// The relevance judgement alone: the best action and its score, or why there is none.
pub fn relevance(policy: &Policy, m: &Message, thread: &ThreadState, memory: &Memory) -> Decision {
    relevance_known(&Facts::new(policy, m), thread, memory).decision(policy)
}

/// [`relevance`], with what is known of the message.
pub fn relevance_known(facts: &Facts, thread: &ThreadState, memory: &Memory) -> Relevance {
    let (policy, m) = (facts.policy, facts.m);
    if m.from_chime {
        return Relevance::quiet(0.0, vec!["Chime's own message".into()]);
    }
    if m.mentions_chime {
        return Relevance::quiet(
            0.0,
            vec!["mentions Chime: the mention path answers it".into()],
        );
    }
    let scope = match facts.scope() {
        Ok(s) => s,
        Err(why) => return Relevance::quiet(0.0, vec![why.clone().into()]),
    };
    if m.author_is_bot && !scope.bots {
        return Relevance::quiet(
            0.0,
            vec![format!(
                "a bot's message, and scope {:?} does not take bots in",
                scope.name
            )
            .into()],
        );
    }
    let scan = facts.scan();
    if thread.claimed || scan.claimed {
        return Relevance::quiet(0.0, vec!["someone has claimed the work".into()]);
    }
    if thread.resolved || scan.resolved {
        return Relevance::quiet(0.0, vec!["resolved".into()]);
    }
    if thread.answered {
        return Relevance::quiet(0.0, vec!["answered in the thread".into()]);
    }
    if m.author_is_bot && m.thread.is_none() && thread.human_replies > 0 {
        return Relevance::quiet(0.0, vec!["a person already replied to the alert".into()]);
    }
    let injected = scan.injection.map(|j| &policy.injection[j]);
    // One scan for every action's signals; each action's score is the sum of its matches. The
    // set lists each action's signals together, in action order, so one pass over the matches
    // sums them, and the best is the first highest.
    let mut best: Option<(usize, f64)> = None;
    let mut next = scan.signals().peekable();
    while let Some(j) = next.next() {
        let (a, w) = policy.signal_of[j];
        let mut score = 0.0 + w;
        while let Some(&(_, w)) = next
            .peek()
            .map(|&k| &policy.signal_of[k])
            .filter(|(b, _)| *b == a)
        {
            score += w;
            next.next();
        }
        let score = score.clamp(0.0, 1.0);
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((a, score));
        }
    }
    let Some((i, mut score)) = best else {
        return Relevance::quiet(0.0, vec!["no action fits".into()]);
    };
    let action = &policy.actions[i];
    let first = policy
        .signal_of
        .iter()
        .position(|(x, _)| *x == i)
        .unwrap_or(0);
    // Room for the whys and the two reasons that may follow them (a flag or the threshold, a
    // refusal or the end of a grace window).
    let mut reasons = Vec::with_capacity(action.whys.len() + 2);
    reasons.extend(
        scan.signals()
            .filter(|&j| policy.signal_of[j].0 == i)
            .map(|j| Reason::Owned(action.whys[j - first].clone())),
    );
    if let Some(r) = injected {
        score -= policy.file.injection.penalty;
        reasons.push(
            format!(
                "flagged: looks like an instruction to Chime or the agent ({})",
                r.as_str()
                    .trim_start_matches("(?i)")
                    .replace("(?-u:\\b)", "\\b")
            )
            .into(),
        );
        // Never offered, whatever the rest scores.
        return Relevance::quiet(score, reasons);
    }
    // Looked up only when something was learnt: the key is two new strings.
    let shift = if memory.threshold_shift.is_empty() {
        0.0
    } else {
        memory
            .threshold_shift
            .get(&(m.place.to_string(), action.kind.clone()))
            .copied()
            .unwrap_or(0.0)
    };
    let threshold = (action.threshold + shift).clamp(action.bounds.0, action.bounds.1);
    if score < threshold {
        reasons.push(
            format!(
                "{} scores {score:.2}, under its threshold {threshold:.2}",
                action.kind
            )
            .into(),
        );
        return Relevance::quiet(score, reasons);
    }
    Relevance {
        action: Some(i),
        score,
        reasons,
    }
}

/// The day (in the workspace's time zone) of a time, for daily budgets.
pub fn day(policy: &Policy, at_ms: i64) -> i64 {
    let offset = policy.quiet.map_or(0, |(_, _, o)| o) as i64 * 60_000;
    (at_ms + offset).div_euclid(86_400_000)
}

fn in_quiet_hours(policy: &Policy, at_ms: i64) -> bool {
    let Some((start, end, offset)) = policy.quiet else {
        return false;
    };
    let minute = ((at_ms / 60_000 + offset as i64).rem_euclid(24 * 60)) as u32;
    if start <= end {
        start <= minute && minute < end
    } else {
        minute >= start || minute < end
    }
}

/// The whole decision: relevance, then (unless `ignore_budgets`) mutes, budgets, cooldowns,
/// quiet hours and the audience rule. Records an offer in `memory` when it suggests.
pub fn decide(
    policy: &Policy,
    m: &Message,
    thread: &ThreadState,
    memory: &mut Memory,
    ignore_budgets: bool,
) -> Decision {
    let facts = Facts::new(policy, m);
    let d = relevance_known(&facts, thread, memory);
    within_budgets(&facts, d, memory, ignore_budgets)
}

/// The rest of [`decide`], given the message's relevance `r`.
pub fn within_budgets(
    facts: &Facts,
    r: Relevance,
    memory: &mut Memory,
    ignore_budgets: bool,
) -> Decision {
    let policy = facts.policy;
    let Some(action) = r.action.filter(|_| !ignore_budgets) else {
        return r.decision(policy);
    };
    let m = facts.m;
    let kind = &policy.actions[action].kind;
    let b = &policy.file.budgets;
    let today = day(policy, m.at_ms);
    let scope_opted_in = facts.scope().as_ref().is_ok_and(|s| s.opted_in);
    let muted = !memory.muted.is_empty()
        && memory
            .muted
            .contains(&(m.place.to_string(), kind.to_string()));
    let refusal = if muted {
        Some(format!("{kind} is muted here"))
    } else if memory.muted_people.contains(m.author) {
        Some("the author muted Chime's suggestions for now".into())
    } else if memory.per_thread.get(m.root()).copied().unwrap_or(0) >= b.per_thread {
        Some("this thread already had its suggestion".into())
    } else if count(&memory.per_place_day, &mut memory.key, m.place, today) >= b.per_channel_per_day
    {
        Some("the channel's daily budget is spent".into())
    } else if !m.author_is_bot
        && count(&memory.per_person_day, &mut memory.key, m.author, today) >= b.per_person_per_day
    {
        Some("this person's daily budget is spent".into())
    } else if memory.last_offer_in_place.get(m.place).is_some_and(|t| {
        b.channel_cooldown_minutes > 0
            && m.at_ms - t < i64::from(b.channel_cooldown_minutes) * 60_000
    }) {
        Some("the channel is cooling down after the last suggestion".into())
    } else if in_quiet_hours(policy, m.at_ms) {
        Some("quiet hours".into())
    } else if !m.author_is_bot && !scope_opted_in && !memory.users.contains(m.author) {
        Some("the author has never used Chime and the channel has not opted in".into())
    } else {
        None
    };
    if let Some(why) = refusal {
        let mut reasons = r.reasons;
        reasons.push(why.into());
        return Decision::quiet(r.score, reasons);
    }
    *memory.per_thread.entry(m.root().to_string()).or_default() += 1;
    *memory
        .per_place_day
        .entry((m.place.to_string(), today))
        .or_default() += 1;
    if !m.author_is_bot {
        *memory
            .per_person_day
            .entry((m.author.to_string(), today))
            .or_default() += 1;
    }
    memory
        .last_offer_in_place
        .insert(m.place.to_string(), m.at_ms);
    r.decision(policy)
}

/// The offers `map` counts for (`name`, `day`), looked up with the reused `key`.
fn count(map: &HashMap<(String, i64), u32>, key: &mut (String, i64), name: &str, day: i64) -> u32 {
    key.0.clear();
    key.0.push_str(name);
    key.1 = day;
    map.get(key).copied().unwrap_or(0)
}
