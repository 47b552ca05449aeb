//! Connection-state recovery offsets of constant size.
//!
//! Every event the chat emits carries an offset, and a stock client that reconnects sends back
//! the last one it received. What the gateway needs from it is, per conversation, the last `seq`
//! the client was sent. Written out in full that grows with every conversation a session has
//! seen (an agent's offset was 11 KB at 200 conversations, re-encoded for every event), so an
//! offset takes one of two forms, both at most [`MAX_OFFSET_LEN`] characters:
//!
//! - **inline** (`c3.`): the positions themselves, while they fit (one or two conversations:
//!   every visitor). Any process sharing the database accepts them, after a restart too.
//! - **reference** (`r3.`): this process's id, a track id and a counter. The track, kept in this
//!   process's [`OffsetTracks`], holds the session's current positions and an undo log of its
//!   last [`TrackLimits::undo_log`] changes, from which the positions as of any recent counter
//!   are rebuilt. Like the stock Node server's in-memory recovery, a reference is good only on
//!   the process that made it, for [`TrackLimits::keep_detached`] after its session ended, and
//!   only within the undo log; otherwise recovery is *declined* and the client is told so
//!   (`socket.recovered` is `false`), so it knows to catch up itself (`resume`, `history`).
//!
//! Both forms carry the time they were made, from which a recovering agent is also sent the
//! conversations that changed while it was away.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chat_core::model::ConversationId;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The longest offset the gateway emits, in characters.
pub const MAX_OFFSET_LEN: usize = 64;

const INLINE_PREFIX: &str = "c3.";
const REFERENCE_PREFIX: &str = "r3.";
/// Emitted when no track could be kept (the table is full), or while the session does not know
/// what its client has: it never recovers.
const UNTRACKED: &str = "x3.";
/// The made-at time: 48-bit Unix milliseconds (good until the year 10889).
const TIME_BYTES: usize = 6;

/// What a client's offset says it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offset {
    /// The positions, carried in full.
    Inline(Positions),
    /// A reference to a track of some process.
    Reference(TrackRef),
}

/// Per conversation, the last `seq` sent, and when that was (Unix milliseconds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions {
    /// The last `seq` sent, per conversation.
    pub seqs: BTreeMap<ConversationId, i64>,
    /// When the offset was made.
    pub made_at_ms: i64,
}

/// A reference offset: positions as of `counter` on track `track` of process `process`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackRef {
    /// The process that made it.
    pub process: u64,
    /// The track within that process.
    pub track: u64,
    /// How many changes the track had when the offset was made.
    pub counter: u64,
    /// When the offset was made.
    pub made_at_ms: i64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, rest) = bytes.split_at_checked(n)?;
    *bytes = rest;
    Some(head)
}

fn put_time(out: &mut Vec<u8>, ms: i64) {
    out.extend_from_slice(&(ms.max(0) as u64).to_be_bytes()[8 - TIME_BYTES..]);
}

fn take_time(bytes: &mut &[u8]) -> Option<i64> {
    let mut be = [0u8; 8];
    be[8 - TIME_BYTES..].copy_from_slice(take(bytes, TIME_BYTES)?);
    Some(u64::from_be_bytes(be) as i64)
}

/// Most bytes an inline offset carries: base64 of n bytes takes ceil(4n/3) characters.
const INLINE_MAX_BYTES: usize = (MAX_OFFSET_LEN - INLINE_PREFIX.len()) * 3 / 4;

fn varint_len(value: u64) -> usize {
    (64 - value.leading_zeros() as usize).max(1).div_ceil(7)
}

/// Whether `seqs` fit an inline offset (counted, not encoded: checked on every message).
fn fits_inline(seqs: &BTreeMap<ConversationId, i64>) -> bool {
    let bytes = seqs
        .values()
        .map(|seq| 16 + varint_len((*seq).max(0) as u64))
        .sum::<usize>();
    TIME_BYTES + bytes <= INLINE_MAX_BYTES
}

/// The inline form of `seqs`, if it fits in [`MAX_OFFSET_LEN`].
fn encode_inline(seqs: &BTreeMap<ConversationId, i64>, made_at_ms: i64) -> Option<String> {
    if !fits_inline(seqs) {
        return None;
    }
    let mut bytes = Vec::with_capacity(INLINE_MAX_BYTES);
    put_time(&mut bytes, made_at_ms);
    for (id, seq) in seqs {
        bytes.extend_from_slice(id.0.as_bytes());
        put_varint(&mut bytes, (*seq).max(0) as u64);
    }
    Some(format!("{INLINE_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

fn encode_reference(r: &TrackRef) -> String {
    let mut bytes = Vec::with_capacity(32);
    put_time(&mut bytes, r.made_at_ms);
    bytes.extend_from_slice(&r.process.to_be_bytes());
    bytes.extend_from_slice(&r.track.to_be_bytes());
    put_varint(&mut bytes, r.counter);
    format!("{REFERENCE_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Decodes an offset made by this module; `None` for anything else (including the untracked
/// form and anything longer than the gateway ever emits).
pub fn decode_offset(offset: &str) -> Option<Offset> {
    if offset.len() > MAX_OFFSET_LEN {
        return None;
    }
    let (prefix, encoded) = offset.split_at_checked(3)?;
    let bytes = URL_SAFE_NO_PAD.decode(encoded).ok()?;
    let mut rest = bytes.as_slice();
    let made_at_ms = take_time(&mut rest)?;
    match prefix {
        INLINE_PREFIX => {
            let mut seqs = BTreeMap::new();
            while !rest.is_empty() {
                let id = uuid::Uuid::from_slice(take(&mut rest, 16)?).ok()?;
                let seq = i64::try_from(take_varint(&mut rest)?).ok()?;
                seqs.insert(ConversationId(id), seq);
            }
            Some(Offset::Inline(Positions { seqs, made_at_ms }))
        }
        REFERENCE_PREFIX => {
            let process = u64::from_be_bytes(take(&mut rest, 8)?.try_into().ok()?);
            let track = u64::from_be_bytes(take(&mut rest, 8)?.try_into().ok()?);
            let counter = take_varint(&mut rest)?;
            rest.is_empty().then_some(Offset::Reference(TrackRef {
                process,
                track,
                counter,
                made_at_ms,
            }))
        }
        _ => None,
    }
}

/// Bounds of the per-process track table; each is a constant documented in `docs/protocol.md`.
#[derive(Debug, Clone, Copy)]
pub struct TrackLimits {
    /// Tracks kept at once (live sessions and ended ones awaiting recovery). When full, the
    /// oldest ended track is dropped; with none ended, a new session emits offsets that do not
    /// recover.
    pub max_tracks: usize,
    /// Changes each track can undo: how far behind the session a recovering client may be.
    pub undo_log: usize,
    /// How long an ended session's track is kept for its client to recover (the stock Node
    /// server's `maxDisconnectionDuration` is 2 minutes).
    pub keep_detached: Duration,
}

impl Default for TrackLimits {
    fn default() -> Self {
        Self {
            max_tracks: 10_000,
            undo_log: 4_096,
            keep_detached: Duration::from_secs(120),
        }
    }
}

/// One session's positions while they do not fit inline.
#[derive(Debug)]
struct Track {
    /// A digest of the principal's `pid`: a reference recovers only for the same principal.
    owner: [u8; 16],
    seqs: BTreeMap<ConversationId, i64>,
    /// Change `counter - undo.len() + i + 1` set `undo[i].0` from `undo[i].1`.
    undo: VecDeque<(ConversationId, Option<i64>)>,
    counter: u64,
    /// When the session that kept it ended.
    ended_at: Option<Instant>,
}

impl Track {
    /// The positions as of change `counter`, if the undo log reaches back that far.
    fn positions_at(&self, counter: u64) -> Option<BTreeMap<ConversationId, i64>> {
        let behind = usize::try_from(self.counter.checked_sub(counter)?).ok()?;
        if behind > self.undo.len() {
            return None;
        }
        let mut seqs = self.seqs.clone();
        for (id, previous) in self.undo.iter().rev().take(behind) {
            match previous {
                Some(seq) => seqs.insert(*id, *seq),
                None => seqs.remove(id),
            };
        }
        Some(seqs)
    }
}

type SharedTrack = Arc<Mutex<Track>>;

fn lock(track: &SharedTrack) -> MutexGuard<'_, Track> {
    track.lock().unwrap_or_else(|p| p.into_inner())
}

/// This process's tracks, shared by every Socket.IO session of the gateway.
#[derive(Debug)]
pub struct OffsetTracks {
    process: u64,
    limits: TrackLimits,
    tracks: Mutex<HashMap<u64, SharedTrack>>,
}

/// What a client's offset gives a new session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// The positions to replay from.
    Recover(Positions),
    /// The offset cannot be honoured here (another process, a restart, too old, garbled).
    Declined,
}

impl OffsetTracks {
    /// An empty table for this process.
    pub fn new(limits: TrackLimits) -> Arc<Self> {
        Arc::new(Self {
            process: rand::random(),
            limits,
            tracks: Mutex::default(),
        })
    }

    fn table(&self) -> MutexGuard<'_, HashMap<u64, SharedTrack>> {
        self.tracks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tracks kept now.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    /// Whether no track is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resolves a client's offset for the principal whose `pid` is `pid`.
    pub fn resolve(&self, offset: &str, pid: &str) -> Resolved {
        match decode_offset(offset) {
            Some(Offset::Inline(positions)) => Resolved::Recover(positions),
            Some(Offset::Reference(r)) if r.process == self.process => {
                let track = self.table().get(&r.track).cloned();
                let seqs = track.and_then(|t| {
                    let t = lock(&t);
                    (t.owner == owner_digest(pid))
                        .then(|| t.positions_at(r.counter))
                        .flatten()
                });
                match seqs {
                    Some(seqs) => Resolved::Recover(Positions {
                        seqs,
                        made_at_ms: r.made_at_ms,
                    }),
                    None => Resolved::Declined,
                }
            }
            _ => Resolved::Declined,
        }
    }

    /// Starts a track holding `seqs`; `None` when the table is full of live sessions.
    fn start(&self, pid: &str, seqs: BTreeMap<ConversationId, i64>) -> Option<(u64, SharedTrack)> {
        let mut table = self.table();
        let now = Instant::now();
        table.retain(|_, t| {
            lock(t)
                .ended_at
                .is_none_or(|ended| now.duration_since(ended) < self.limits.keep_detached)
        });
        if table.len() >= self.limits.max_tracks {
            let oldest_ended = table
                .iter()
                .filter_map(|(id, t)| lock(t).ended_at.map(|at| (at, *id)))
                .min();
            table.remove(&oldest_ended?.1);
        }
        let id = loop {
            let id = rand::random();
            if !table.contains_key(&id) {
                break id;
            }
        };
        let track = Arc::new(Mutex::new(Track {
            owner: owner_digest(pid),
            seqs,
            undo: VecDeque::new(),
            counter: 0,
            ended_at: None,
        }));
        table.insert(id, track.clone());
        Some((id, track))
    }
}

fn owner_digest(pid: &str) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(pid.as_bytes());
    let mut owner = [0u8; 16];
    owner.copy_from_slice(&digest[..16]);
    owner
}

/// One session's positions and the offsets that describe them.
#[derive(Debug)]
pub struct OffsetTrack {
    tracks: Arc<OffsetTracks>,
    pid: String,
    state: TrackState,
    /// Whether the positions are all the client has. After a declined recovery the client holds
    /// conversations the session never sent: until it says which (`resume`), an offset would
    /// lead a later recovery to replay them from the start, so none is given (`x3.`).
    known: bool,
}

#[derive(Debug)]
enum TrackState {
    Inline(BTreeMap<ConversationId, i64>),
    Tracked(u64, SharedTrack),
    /// The table was full: offsets do not recover.
    Untracked,
}

impl OffsetTrack {
    /// A track for the session of `pid`, starting from `seqs` (empty for a new session, the
    /// recovered positions for a recovered one).
    pub fn new(
        tracks: Arc<OffsetTracks>,
        pid: String,
        seqs: BTreeMap<ConversationId, i64>,
    ) -> Self {
        let mut track = Self {
            tracks,
            pid,
            state: TrackState::Inline(BTreeMap::new()),
            known: true,
        };
        track.promote_if_needed(seqs);
        track
    }

    /// A track for a session whose client's recovery was declined: its offsets do not recover
    /// until [`OffsetTrack::caught_up`].
    pub fn unknown(tracks: Arc<OffsetTracks>, pid: String) -> Self {
        let mut track = Self::new(tracks, pid, BTreeMap::new());
        track.known = false;
        track
    }

    /// The client said (`resume`) that it has `cursors`; with what was sent, that is all it has.
    pub fn caught_up(&mut self, cursors: &BTreeMap<ConversationId, i64>) {
        for (conversation, seq) in cursors {
            self.advance(*conversation, *seq);
        }
        self.known = true;
    }

    /// Moves positions that no longer fit inline to a track in the table.
    fn promote_if_needed(&mut self, seqs: BTreeMap<ConversationId, i64>) {
        self.state = if fits_inline(&seqs) {
            TrackState::Inline(seqs)
        } else {
            match self.tracks.start(&self.pid, seqs) {
                Some((id, track)) => TrackState::Tracked(id, track),
                None => TrackState::Untracked,
            }
        };
    }

    /// Records that message `seq` of `conversation` was sent.
    pub fn advance(&mut self, conversation: ConversationId, seq: i64) {
        match &mut self.state {
            TrackState::Inline(seqs) => {
                let seen = seqs.entry(conversation).or_insert(0);
                if *seen >= seq {
                    return;
                }
                *seen = seq;
                if !fits_inline(seqs) {
                    let seqs = std::mem::take(seqs);
                    self.promote_if_needed(seqs);
                }
            }
            TrackState::Tracked(_, track) => {
                let mut t = lock(track);
                let previous = t.seqs.get(&conversation).copied();
                if previous.is_some_and(|p| p >= seq) {
                    return;
                }
                t.seqs.insert(conversation, seq);
                if t.undo.len() == self.tracks.limits.undo_log {
                    t.undo.pop_front();
                }
                t.undo.push_back((conversation, previous));
                t.counter += 1;
            }
            TrackState::Untracked => {}
        }
    }

    /// The offset describing what has been sent so far.
    pub fn offset(&self) -> String {
        let made_at_ms = now_ms();
        if !self.known {
            return UNTRACKED.to_owned();
        }
        match &self.state {
            TrackState::Inline(seqs) => {
                encode_inline(seqs, made_at_ms).unwrap_or_else(|| UNTRACKED.to_owned())
            }
            TrackState::Tracked(id, track) => encode_reference(&TrackRef {
                process: self.tracks.process,
                track: *id,
                counter: lock(track).counter,
                made_at_ms,
            }),
            TrackState::Untracked => UNTRACKED.to_owned(),
        }
    }
}

impl Drop for OffsetTrack {
    /// The session ended: its track is kept for [`TrackLimits::keep_detached`].
    fn drop(&mut self) {
        if let TrackState::Tracked(_, track) = &self.state {
            lock(track).ended_at = Some(Instant::now());
        }
    }
}

#[cfg(test)]
#[path = "offset_tests.rs"]
mod tests;
