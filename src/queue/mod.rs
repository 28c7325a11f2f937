//! The two durable queues every piece of work passes through: the inbox (events in, handled once
//! each, threads in order) and the outbox (every write to a platform, sent in order per binding).

pub mod dispatch;
pub mod inbox;
pub mod outbox;
