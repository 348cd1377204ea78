//! The notes auth and the transcoder leave the access log, kept in the module for one stream.
//! The three filters are one shared library on one worker, so a note need not cross Envoy: a
//! dynamic-metadata write cost ~4k instructions and a read ~1.4k, three writes and two reads
//! a request (bench/CHANGES.md).
//!
//! Envoy creates a stream's filters one after the other on its worker, in chain order, before
//! its first hook runs and before any other stream's are created. The access log comes first
//! in every chain edgectl renders, so it [opens](StreamNotes::open) the stream's record and
//! the filters created after it [join](StreamNotes::join) it; its first hook closes the record
//! to joiners. A filter that finds no record open, or one its kind already joined (a chain
//! without the access log, or with it later), leaves its notes in dynamic metadata as before,
//! and says so to the next record opened: an access log whose record lacks a note, when nobody
//! joined it or a filter before it could not, reads the note from there.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// One stream's notes, by key, and which filters joined it.
#[derive(Debug, Default)]
pub struct StreamNotes {
    notes: RefCell<Vec<(String, Vec<u8>)>>,
    joined: RefCell<Vec<&'static str>>,
    closed: Cell<bool>,
    /// A filter created since the last record opened could not join one: its notes went to
    /// dynamic metadata.
    strays: bool,
}

thread_local! {
    /// The record of the stream whose filters are being created on this worker.
    static OPENING: RefCell<Option<Rc<StreamNotes>>> = const { RefCell::new(None) };
    /// A filter could not join since the last record opened.
    static STRAYS: Cell<bool> = const { Cell::new(false) };
}

impl StreamNotes {
    /// A new stream's record, open to the filters created after this one.
    pub fn open() -> Rc<Self> {
        let notes = Rc::new(Self {
            strays: STRAYS
                .try_with(|strays| strays.replace(false))
                .unwrap_or(true),
            ..Self::default()
        });
        let _ = OPENING.try_with(|opening| {
            if let Ok(mut opening) = opening.try_borrow_mut() {
                *opening = Some(notes.clone());
            }
        });
        notes
    }

    /// The record being opened, for the filter `name`, unless that filter already joined it.
    pub fn join(name: &'static str) -> Option<Rc<Self>> {
        let joined = Self::try_join(name);
        if joined.is_none() {
            let _ = STRAYS.try_with(|strays| strays.set(true));
        }
        joined
    }

    fn try_join(name: &'static str) -> Option<Rc<Self>> {
        let notes = OPENING
            .try_with(|opening| opening.try_borrow().ok()?.clone())
            .ok()
            .flatten()?;
        let mut joined = notes.joined.try_borrow_mut().ok()?;
        if notes.closed.get() || joined.contains(&name) {
            return None;
        }
        joined.push(name);
        drop(joined);
        Some(notes)
    }

    /// Ends the joining: the stream's filters are all created once one of its hooks runs.
    pub fn close(&self) {
        self.closed.set(true);
        let _ = OPENING.try_with(|opening| {
            if let Ok(mut opening) = opening.try_borrow_mut() {
                if opening
                    .as_ref()
                    .is_some_and(|open| std::ptr::eq(&**open, self))
                {
                    *opening = None;
                }
            }
        });
    }

    /// Whether a note this record lacks may be in dynamic metadata: nobody joined it, or a
    /// filter could not.
    pub fn may_lack(&self) -> bool {
        self.strays
            || self
                .joined
                .try_borrow()
                .map_or(true, |joined| joined.is_empty())
    }

    pub fn set(&self, key: &str, value: &[u8]) {
        let Ok(mut notes) = self.notes.try_borrow_mut() else {
            return;
        };
        match notes.iter_mut().find(|(known, _)| known == key) {
            Some((_, known)) => {
                known.clear();
                known.extend_from_slice(value);
            }
            None => notes.push((key.to_string(), value.to_vec())),
        }
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let notes = self.notes.try_borrow().ok()?;
        notes
            .iter()
            .find(|(known, _)| known == key)
            .map(|(_, value)| value.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_created_after_the_access_log_share_its_record_once() {
        let record = StreamNotes::open();
        let auth = StreamNotes::join("auth").unwrap();
        let transcoder = StreamNotes::join("transcoder").unwrap();
        assert!(!record.may_lack());
        // A second auth before the next stream opens belongs to a chain without the access log.
        assert!(StreamNotes::join("auth").is_none());
        auth.set("edge_auth", b"alice");
        transcoder.set("edge_transcode", b"one");
        transcoder.set("edge_transcode", b"two");
        assert_eq!(record.get("edge_auth").as_deref(), Some(&b"alice"[..]));
        assert_eq!(record.get("edge_transcode").as_deref(), Some(&b"two"[..]));
        assert_eq!(record.get("other"), None);
    }

    #[test]
    fn a_record_whose_stream_has_begun_takes_no_more_joiners() {
        let record = StreamNotes::open();
        record.close();
        assert!(StreamNotes::join("auth").is_none());
        assert!(record.may_lack(), "nobody joined");
        // A filter created before the access log finds the previous stream's record closed,
        // and the next record knows a note may be elsewhere.
        let next = StreamNotes::open();
        assert!(StreamNotes::join("auth").is_some());
        assert!(next.may_lack(), "the auth before it strayed");
        next.close();
        assert!(StreamNotes::join("transcoder").is_none());
        let after = StreamNotes::open();
        assert!(StreamNotes::join("auth").is_some());
        assert!(after.may_lack(), "the transcoder before it strayed");
        let clean = StreamNotes::open();
        assert!(StreamNotes::join("auth").is_some());
        assert!(!clean.may_lack());
    }
}
