//! Sorting more entries than an export may hold: entries (a key and a value, both bytes) are
//! gathered up to a bound, sorted, and spilled as a sorted run to an anonymous temporary file
//! beside the bundle (unlinked from the start: nothing is left behind, even by a killed export);
//! reading them back merges the runs. Memory stays at one run's bytes plus a read buffer per
//! run, whatever the number of entries. The sort is stable: entries with equal keys come back
//! in the order they were pushed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{BundleError, Result};

/// Bytes of entries gathered before they are sorted and spilled as one run.
const RUN_BYTES: usize = 16 * 1024 * 1024;
/// The bound of a run: [`RUN_BYTES`], or what a test set on its thread.
pub(super) fn run_bytes() -> usize {
    #[cfg(test)]
    if let Some(n) = TEST_RUN_BYTES.with(std::cell::Cell::get) {
        return n;
    }
    RUN_BYTES
}

#[cfg(test)]
thread_local! {
    /// Tests make runs small to have an export's sorts spill to disk.
    pub(super) static TEST_RUN_BYTES: std::cell::Cell<Option<usize>> =
        const { std::cell::Cell::new(None) };
}

/// Read buffer of each run while merging.
const RUN_READ_BUFFER: usize = 64 * 1024;

/// Entries being sorted (see the module documentation).
pub(super) struct Spill {
    /// Where the temporary files are made (the export's directory: same file system, and no
    /// memory-backed `/tmp`).
    dir: PathBuf,
    run_bytes: usize,
    /// The current run's entries, each `[key length u32][value length u32][key][value]`.
    buf: Vec<u8>,
    /// Where each entry of `buf` starts.
    starts: Vec<usize>,
    /// Sorted runs spilled so far, each in the layout of `buf`.
    runs: Vec<fs::File>,
}

impl Spill {
    pub(super) fn new(dir: &Path, run_bytes: usize) -> Self {
        Self {
            dir: dir.to_path_buf(),
            run_bytes,
            buf: Vec::new(),
            starts: Vec::new(),
            runs: Vec::new(),
        }
    }

    /// Adds one entry; spills the run when it reaches its bound.
    pub(super) fn push(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let (Ok(key_len), Ok(value_len)) = (u32::try_from(key.len()), u32::try_from(value.len()))
        else {
            return Err(self.write_error(std::io::Error::other("entry too large to sort")));
        };
        if !self.starts.is_empty() && self.buf.len() + 8 + key.len() + value.len() > self.run_bytes
        {
            self.spill()?;
        }
        self.starts.push(self.buf.len());
        self.buf.extend_from_slice(&key_len.to_le_bytes());
        self.buf.extend_from_slice(&value_len.to_le_bytes());
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(value);
        Ok(())
    }

    /// The entry of `buf` at `start`: (key, value).
    fn entry(buf: &[u8], start: usize) -> (&[u8], &[u8]) {
        let len = |at: usize| {
            buf.get(at..at + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map_or(0, |b| u32::from_le_bytes(b) as usize)
        };
        let (key_len, value_len) = (len(start), len(start + 4));
        let key_at = start + 8;
        let value_at = key_at + key_len;
        (
            buf.get(key_at..value_at).unwrap_or_default(),
            buf.get(value_at..value_at + value_len).unwrap_or_default(),
        )
    }

    fn sort_run(&mut self) {
        let buf = &self.buf;
        self.starts
            .sort_by(|&a, &b| Self::entry(buf, a).0.cmp(Self::entry(buf, b).0));
    }

    /// Writes the current run, sorted, to a new anonymous temporary file.
    fn spill(&mut self) -> Result<()> {
        self.sort_run();
        let file = tempfile::tempfile_in(&self.dir).map_err(|e| self.write_error(e))?;
        let mut out = BufWriter::with_capacity(RUN_READ_BUFFER, file);
        for &start in &self.starts {
            let (key, value) = Self::entry(&self.buf, start);
            let written = out
                .write_all(&(key.len() as u32).to_le_bytes())
                .and_then(|()| out.write_all(&(value.len() as u32).to_le_bytes()))
                .and_then(|()| out.write_all(key))
                .and_then(|()| out.write_all(value));
            written.map_err(|e| self.write_error(e))?;
        }
        let mut file = out
            .into_inner()
            .map_err(|e| self.write_error(e.into_error()))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| self.write_error(e))?;
        self.runs.push(file);
        self.buf.clear();
        self.starts.clear();
        Ok(())
    }

    fn write_error(&self, source: std::io::Error) -> BundleError {
        BundleError::Write {
            path: self.dir.join("(temporary sort file)"),
            source,
        }
    }

    /// Ends the gathering: the entries in key order. Nothing touches the disk when they fit
    /// one run.
    pub(super) fn finish(mut self) -> Result<Sorted> {
        if self.runs.is_empty() {
            self.sort_run();
            return Ok(Sorted {
                source: Source::Memory {
                    buf: self.buf,
                    starts: self.starts.into_iter(),
                },
                next: None,
            });
        }
        if !self.starts.is_empty() {
            self.spill()?;
        }
        let mut readers: Vec<BufReader<fs::File>> = self
            .runs
            .into_iter()
            .map(|f| BufReader::with_capacity(RUN_READ_BUFFER, f))
            .collect();
        let mut heads = BinaryHeap::new();
        for (run, reader) in readers.iter_mut().enumerate() {
            if let Some((key, value)) = read_entry(reader)? {
                heads.push(Reverse((key, run, value)));
            }
        }
        Ok(Sorted {
            source: Source::Runs { readers, heads },
            next: None,
        })
    }
}

/// Reads one entry of a run; `None` at its end.
fn read_entry(reader: &mut impl Read) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
    let err = |source| BundleError::Read {
        path: "(temporary sort file)".into(),
        source,
    };
    let mut head = [0u8; 8];
    // A run ends between entries: no byte of the next header.
    let mut got = 0;
    while got < head.len() {
        let n = reader
            .read(head.get_mut(got..).unwrap_or_default())
            .map_err(err)?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(err(std::io::ErrorKind::UnexpectedEof.into()));
        }
        got += n;
    }
    let [k0, k1, k2, k3, v0, v1, v2, v3] = head;
    let key_len = u32::from_le_bytes([k0, k1, k2, k3]) as usize;
    let value_len = u32::from_le_bytes([v0, v1, v2, v3]) as usize;
    let mut key = vec![0u8; key_len];
    let mut value = vec![0u8; value_len];
    reader.read_exact(&mut key).map_err(err)?;
    reader.read_exact(&mut value).map_err(err)?;
    Ok(Some((key, value)))
}

/// A run's next entry: (key, run, value), smallest first.
type Head = Reverse<(Vec<u8>, usize, Vec<u8>)>;

enum Source {
    Memory {
        buf: Vec<u8>,
        starts: std::vec::IntoIter<usize>,
    },
    Runs {
        readers: Vec<BufReader<fs::File>>,
        /// The next entry of each run not yet used up; ties go to the earlier run (stable).
        heads: BinaryHeap<Head>,
    },
}

/// The entries of a [`Spill`], in key order.
pub(super) struct Sorted {
    source: Source,
    /// An entry looked at ([`Sorted::peek_key`]) and not taken yet.
    next: Option<(Vec<u8>, Vec<u8>)>,
}

impl Sorted {
    fn pull(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        match &mut self.source {
            Source::Memory { buf, starts } => Ok(starts.next().map(|start| {
                let (key, value) = Spill::entry(buf, start);
                (key.to_vec(), value.to_vec())
            })),
            Source::Runs { readers, heads } => {
                let Some(Reverse((key, run, value))) = heads.pop() else {
                    return Ok(None);
                };
                if let Some(reader) = readers.get_mut(run)
                    && let Some((k, v)) = read_entry(reader)?
                {
                    heads.push(Reverse((k, run, v)));
                }
                Ok(Some((key, value)))
            }
        }
    }

    /// The next entry: (key, value).
    pub(super) fn next_entry(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        match self.next.take() {
            Some(entry) => Ok(Some(entry)),
            None => self.pull(),
        }
    }

    /// The key of the next entry, leaving it to be taken.
    pub(super) fn peek_key(&mut self) -> Result<Option<&[u8]>> {
        if self.next.is_none() {
            self.next = self.pull()?;
        }
        Ok(self.next.as_ref().map(|(key, _)| key.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(mut sorted: Sorted) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(entry) = sorted.next_entry().expect("reads") {
            out.push(entry);
        }
        out
    }

    #[test]
    fn runs_spilled_to_disk_merge_in_stable_key_order() {
        let tmp = tempfile::tempdir().expect("tmp");
        // Keys with many repeats, in a scrambled order; each value its push order.
        let entries: Vec<(Vec<u8>, Vec<u8>)> = (0u32..5_000)
            .map(|i| {
                let key = format!("k{:03}", (i * 7_919) % 331).into_bytes();
                (key, i.to_be_bytes().to_vec())
            })
            .collect();
        let mut expected = entries.clone();
        expected.sort_by(|a, b| a.0.cmp(&b.0)); // stable
        for run_bytes in [1_000, 16_384, 1 << 20] {
            let mut spill = Spill::new(tmp.path(), run_bytes);
            for (key, value) in &entries {
                spill.push(key, value).expect("push");
            }
            let runs = spill.runs.len();
            assert_eq!(runs > 0, run_bytes < 100_000, "runs at {run_bytes}: {runs}");
            let mut sorted = spill.finish().expect("finish");
            assert_eq!(sorted.peek_key().expect("peek"), Some(&b"k000"[..]));
            assert_eq!(drain(sorted), expected, "runs of {run_bytes} bytes");
        }
        // The runs were anonymous files: nothing is left in the folder.
        assert_eq!(fs::read_dir(tmp.path()).expect("dir").count(), 0);
        let empty = Spill::new(tmp.path(), 16).finish().expect("finish");
        assert!(drain(empty).is_empty());
    }
}
