//! What replay remembers of each thread, keyed by integers rather than by the judge's
//! `channel/ts` names: a replay of a million messages keeps hundreds of thousands of threads,
//! and string keys there meant a pointer to chase and bytes to hash and compare on every
//! message (a tenth of replay's time).

use crate::policy::judge::ThreadState;
use rustc_hash::FxHashMap;

/// A thread's name, `channel/ts`, as an integer key. In the usual case (one `/`, and a
/// timestamp of at most 32 digits and points) it is the channel's number and the timestamp
/// packed four bits a character; otherwise the number of the whole name. Both are one-to-one,
/// and a name takes the first form whenever it can, so equal names get equal keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Packed(u32, u128),
    Named(u32),
}

#[derive(Default)]
pub(super) struct Threads {
    channels: FxHashMap<Box<str>, u32>,
    names: FxHashMap<Box<str>, u32>,
    states: FxHashMap<Key, ThreadState>,
}

impl Threads {
    /// The state of thread `channel/ts`, when something was recorded in it.
    pub fn get_mut(&mut self, channel: &str, ts: &str) -> Option<&mut ThreadState> {
        let key = self.find(channel, ts)?;
        self.states.get_mut(&key)
    }

    pub fn insert(&mut self, channel: &str, ts: &str, state: ThreadState) {
        let key = match (channel.contains('/'), pack(ts)) {
            (false, Some(ts)) => Key::Packed(number(&mut self.channels, channel), ts),
            _ => Key::Named(number(&mut self.names, &format!("{channel}/{ts}"))),
        };
        self.states.insert(key, state);
    }

    /// The key of `channel/ts`, if its thread can have been recorded.
    fn find(&self, channel: &str, ts: &str) -> Option<Key> {
        match (channel.contains('/'), pack(ts)) {
            (false, Some(ts)) => Some(Key::Packed(*self.channels.get(channel)?, ts)),
            _ => Some(Key::Named(*self.names.get(&*format!("{channel}/{ts}"))?)),
        }
    }
}

/// The number of `name` in `numbers`, given the next one when it is new.
fn number(numbers: &mut FxHashMap<Box<str>, u32>, name: &str) -> u32 {
    if let Some(&n) = numbers.get(name) {
        return n;
    }
    let n = u32::try_from(numbers.len()).expect("fewer than 2^32 names");
    numbers.insert(name.into(), n);
    n
}

/// A timestamp of at most 32 digits and points, four bits a character. No character packs to
/// zero, so different strings (leading zeros and length included) pack differently.
fn pack(ts: &str) -> Option<u128> {
    if ts.len() > 32 {
        return None;
    }
    ts.bytes().try_fold(0u128, |packed, b| {
        let nibble = match b {
            b'0'..=b'9' => b - b'0' + 1,
            b'.' => 11,
            _ => return None,
        };
        Some(packed << 4 | u128::from(nibble))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_is_one_to_one() {
        let all = [
            "",
            "0",
            "00",
            "1",
            "01",
            "1.5",
            "1.50",
            "15",
            ".15",
            "1764000000.123456",
        ];
        for a in all {
            for b in all {
                assert_eq!(pack(a) == pack(b), a == b, "{a:?} {b:?}");
            }
        }
        assert_eq!(pack(&"9".repeat(32)).map(|p| p.leading_zeros()), Some(0));
        assert_eq!(pack(&"9".repeat(33)), None);
        assert_eq!(pack("1e5"), None);
        assert_eq!(pack("1/5"), None);
    }

    #[test]
    fn a_name_is_one_thread_however_it_splits() {
        let mut threads = Threads::default();
        let state = |n| ThreadState {
            human_replies: n,
            ..ThreadState::default()
        };
        threads.insert("C1", "1.5", state(1));
        threads.insert("a/b", "c", state(2));
        threads.insert("C1", "x y", state(3));
        assert_eq!(threads.get_mut("C1", "1.5").cloned(), Some(state(1)));
        // The judge names both `a/b/c`: one thread.
        assert_eq!(threads.get_mut("a", "b/c").cloned(), Some(state(2)));
        assert_eq!(threads.get_mut("C1", "x y").cloned(), Some(state(3)));
        assert_eq!(threads.get_mut("C1", "1.50"), None);
        assert_eq!(threads.get_mut("C2", "1.5"), None);
        threads.insert("a", "b/c", state(4));
        assert_eq!(threads.get_mut("a/b", "c").cloned(), Some(state(4)));
    }
}
