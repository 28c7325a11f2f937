//! Replay output in input order while decisions become final out of it: an alert is decided
//! when its grace window ends, after the lines that follow it were. Those lines are held,
//! already written out as JSON, until the alert before them is decided.

use super::line::write_line;
use crate::policy::judge::Decision;
use std::collections::VecDeque;
use std::io::Write;

/// A held line.
enum Held {
    /// An alert waiting for its window to end.
    Waiting,
    /// A decided line in `arena`, ending at this offset (counted from the start of the output,
    /// so it survives compaction).
    Line(usize),
    /// An alert decided late, written on its own.
    Late(Vec<u8>),
}

pub(super) struct InOrder<W: Write> {
    out: W,
    /// The input index of `held[0]`.
    first: usize,
    held: VecDeque<Held>,
    /// The held lines' bytes; `arena[0]` is byte `base` of the output lines held so far.
    arena: Vec<u8>,
    base: usize,
    /// Where the first line still held starts, counted like `Held::Line`.
    done: usize,
    /// A line written straight out, reused.
    line: Vec<u8>,
}

impl<W: Write> InOrder<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            first: 0,
            held: VecDeque::new(),
            arena: vec![],
            base: 0,
            done: 0,
            line: vec![],
        }
    }

    /// The decision of the next input in order.
    pub fn line(&mut self, index: usize, id: &str, d: &Decision) -> anyhow::Result<()> {
        debug_assert_eq!(index, self.first + self.held.len());
        if self.held.is_empty() {
            self.first = index + 1;
            self.line.clear();
            write_line(&mut self.line, id, d);
            return Ok(self.out.write_all(&self.line)?);
        }
        write_line(&mut self.arena, id, d);
        self.held
            .push_back(Held::Line(self.base + self.arena.len()));
        Ok(())
    }

    /// The next input in order waits: an alert decided when its window ends.
    pub fn wait(&mut self, index: usize) {
        debug_assert_eq!(index, self.first + self.held.len());
        self.held.push_back(Held::Waiting);
    }

    /// The decision of an alert that waited; writes what it held back.
    pub fn late(&mut self, index: usize, id: &str, d: &Decision) -> anyhow::Result<()> {
        let mut line = vec![];
        write_line(&mut line, id, d);
        self.held[index - self.first] = Held::Late(line);
        self.flush_ready()
    }

    /// Writes the held lines up to the first alert still waiting.
    fn flush_ready(&mut self) -> anyhow::Result<()> {
        loop {
            match self.held.front() {
                Some(Held::Line(end)) => {
                    // Consecutive lines go out in one write.
                    let mut end = *end;
                    self.held.pop_front();
                    self.first += 1;
                    while let Some(&Held::Line(next)) = self.held.front() {
                        end = next;
                        self.held.pop_front();
                        self.first += 1;
                    }
                    self.out
                        .write_all(&self.arena[self.done - self.base..end - self.base])?;
                    self.done = end;
                }
                Some(Held::Late(line)) => {
                    self.out.write_all(line)?;
                    self.held.pop_front();
                    self.first += 1;
                }
                Some(Held::Waiting) => break,
                None => {
                    self.arena.clear();
                    self.base = self.done;
                    return Ok(());
                }
            }
        }
        // Drop what was written once it is most of the arena, so it stays about the size of
        // what is held.
        let written = self.done - self.base;
        if written > 1 << 20 && written > self.arena.len() / 2 {
            self.arena.drain(..written);
            self.base = self.done;
        }
        Ok(())
    }

    /// Everything is decided: the end of the output.
    pub fn finish(mut self) -> anyhow::Result<W> {
        self.flush_ready()?;
        debug_assert!(self.held.is_empty(), "every input is decided");
        Ok(self.out)
    }
}
