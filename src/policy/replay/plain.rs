//! Where a JSON string's plain run ends: the first `"`, `\` or control character, which are what
//! JSON escapes. Replay looks for it in every string it reads and writes (about 350 bytes a
//! message), so it tests eight bytes at a time.

const ONES: u64 = u64::from_le_bytes([1; 8]);
const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);

/// The length of the longest prefix of `s` that a JSON string holds unescaped.
pub(super) fn plain_prefix(s: &[u8]) -> usize {
    let mut at = 0;
    while let Some(chunk) = s.get(at..at + 8) {
        let x = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        // `below(v, n)` flags, in its high bit, each byte of `v` under n (n <= 0x80). A flag can
        // also be set above a flagged byte (a borrow), never below one: the lowest is exact.
        let below = |v: u64, n: u8| v.wrapping_sub(ONES * u64::from(n)) & !v & HIGHS;
        let stops = below(x ^ (ONES * u64::from(b'"')), 1)
            | below(x ^ (ONES * u64::from(b'\\')), 1)
            | below(x, 0x20);
        if stops != 0 {
            return at + stops.trailing_zeros() as usize / 8;
        }
        at += 8;
    }
    at + s[at..]
        .iter()
        .position(|&b| is_stop(b))
        .unwrap_or(s.len() - at)
}

fn is_stop(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive(s: &[u8]) -> usize {
        s.iter().position(|&b| is_stop(b)).unwrap_or(s.len())
    }

    #[test]
    fn every_stop_byte_is_found_in_every_lane() {
        for stop in (0..0x20).chain([b'"', b'\\']) {
            for len in 0..20 {
                for at in 0..=len {
                    let mut s = vec![b'a'; len];
                    if at < len {
                        s[at] = stop;
                    }
                    assert_eq!(plain_prefix(&s), at, "{stop:#x} at {at} of {len}");
                }
            }
        }
        // Bytes next to the stops, and non-ASCII, are plain.
        let plain: Vec<u8> = [0x20, b'!', b'#', b'[', b']', 0x7f, 0x80, 0xff]
            .repeat(3)
            .into_iter()
            .chain("é😀".bytes())
            .collect();
        assert_eq!(plain_prefix(&plain), plain.len());
    }

    proptest! {
        #[test]
        fn agrees_with_the_byte_by_byte_test(s in prop::collection::vec(any::<u8>(), 0..40)) {
            prop_assert_eq!(plain_prefix(&s), naive(&s));
        }

        #[test]
        fn agrees_on_mostly_plain_text(s in "[ -~\u{80}-\u{3000}\"\\\\\t]{0,40}") {
            prop_assert_eq!(plain_prefix(s.as_bytes()), naive(s.as_bytes()));
        }
    }
}
