//! The lines of a file, read through one buffer: each line is lent from where it was read, not
//! copied out as `BufRead::read_until` does, and found with `memchr`'s vectorised search.

use std::io::{ErrorKind, Read};

pub(super) struct Lines<R> {
    r: R,
    buf: Vec<u8>,
    /// The bytes read and not yet lent are `buf[start..end]`.
    start: usize,
    end: usize,
    eof: bool,
}

impl<R: Read> Lines<R> {
    pub fn new(r: R) -> Self {
        Self {
            r,
            buf: vec![0; 1 << 20],
            start: 0,
            end: 0,
            eof: false,
        }
    }

    /// The next line, with its `\n` when it has one; None at the end.
    pub fn next_line(&mut self) -> std::io::Result<Option<&[u8]>> {
        loop {
            let unread = self.start..self.end;
            if let Some(i) = memchr::memchr(b'\n', &self.buf[unread.clone()]) {
                self.start += i + 1;
                return Ok(Some(&self.buf[unread.start..self.start]));
            }
            if self.eof {
                self.start = self.end;
                return Ok((!unread.is_empty()).then(|| &self.buf[unread]));
            }
            // Keep the start of the line, moved to the front, and read after it; a line longer
            // than the buffer grows it.
            self.buf.copy_within(unread.clone(), 0);
            (self.start, self.end) = (0, unread.len());
            if self.end == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            match self.r.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &[u8], buf: usize) -> Vec<Vec<u8>> {
        let mut lines = Lines::new(text);
        lines.buf.truncate(buf);
        let mut out = vec![];
        while let Some(l) = lines.next_line().unwrap() {
            out.push(l.to_vec());
        }
        out
    }

    #[test]
    fn lines_are_what_read_until_finds() {
        use std::io::BufRead;
        for text in [
            &b""[..],
            b"\n",
            b"a",
            b"a\n",
            b"a\r\nbb\n\nccc",
            b"a long line that does not fit a small buffer\nand another\n",
        ] {
            let mut want = vec![];
            let mut r = text;
            loop {
                let mut l = vec![];
                if r.read_until(b'\n', &mut l).unwrap() == 0 {
                    break;
                }
                want.push(l);
            }
            for buf in [1, 2, 3, 7, 1 << 20] {
                assert_eq!(all(text, buf), want, "{buf}: {:?}", text);
            }
        }
    }
}
