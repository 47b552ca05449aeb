use super::*;

fn conv() -> ConversationId {
    ConversationId::new_random()
}

fn table() -> Arc<OffsetTracks> {
    OffsetTracks::new(TrackLimits {
        max_tracks: 3,
        undo_log: 8,
        keep_detached: Duration::from_secs(60),
    })
}

#[test]
fn varints_and_garbage() {
    for value in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
        let mut out = Vec::new();
        put_varint(&mut out, value);
        let mut slice = out.as_slice();
        assert_eq!(take_varint(&mut slice), Some(value));
        assert!(slice.is_empty());
    }
    for value in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
        let mut out = Vec::new();
        put_varint(&mut out, value);
        assert_eq!(varint_len(value), out.len(), "{value}");
    }
    assert_eq!(take_varint(&mut [0x80u8, 0x80].as_slice()), None);
    assert_eq!(take_varint(&mut [0xffu8; 11].as_slice()), None);
    for garbage in ["", "42", "c3.", "c3.!!!", "r3.AAAA", "x3.", "c2.e30"] {
        assert_eq!(decode_offset(garbage), None, "{garbage}");
    }
    let long = format!("c3.{}", "A".repeat(MAX_OFFSET_LEN));
    assert_eq!(decode_offset(&long), None);
}

#[test]
fn a_visitor_with_one_or_two_conversations_is_inline_and_recovers_anywhere() {
    let (a, b) = (conv(), conv());
    let mut track = OffsetTrack::new(table(), "pid".into(), BTreeMap::new());
    track.advance(a, 7);
    track.advance(b, 1_000_000);
    let offset = track.offset();
    assert!(
        offset.starts_with("c3.") && offset.len() <= MAX_OFFSET_LEN,
        "{offset}"
    );
    // Another process (another table) accepts it.
    let Resolved::Recover(p) = table().resolve(&offset, "anyone") else {
        panic!("inline offsets recover anywhere")
    };
    assert_eq!(p.seqs, BTreeMap::from([(a, 7), (b, 1_000_000)]));
    assert!(p.made_at_ms > 1_700_000_000_000);
}

#[test]
fn many_conversations_make_a_reference_of_constant_size_that_recovers_exactly() {
    let tracks = table();
    let mut track = OffsetTrack::new(tracks.clone(), "agent".into(), BTreeMap::new());
    let ids: Vec<_> = (0..200).map(|_| conv()).collect();
    let mut offsets = Vec::new();
    let mut expected = BTreeMap::new();
    for round in 1..=3 {
        for id in &ids {
            track.advance(*id, round);
            expected.insert(*id, round);
            offsets.push((track.offset(), expected.clone()));
        }
    }
    assert!(offsets.iter().all(|(o, _)| o.len() <= MAX_OFFSET_LEN));
    assert_eq!(tracks.len(), 1);
    // The last offset and the ones within the undo log rebuild what had been sent then.
    for (offset, sent) in offsets.iter().rev().take(9) {
        match tracks.resolve(offset, "agent") {
            Resolved::Recover(p) => assert_eq!(&p.seqs, sent),
            Resolved::Declined => panic!("{offset} is within the undo log"),
        }
    }
    // The first two were inline; the third is the track's start.
    assert!(offsets[1].0.starts_with("c3.") && offsets[2].0.starts_with("r3."));
    // Older than the undo log, another principal, another process: declined.
    assert_eq!(tracks.resolve(&offsets[10].0, "agent"), Resolved::Declined);
    let last = &offsets.last().unwrap().0;
    assert_eq!(tracks.resolve(last, "mallory"), Resolved::Declined);
    assert_eq!(table().resolve(last, "agent"), Resolved::Declined);
    // Repeated or older seqs change nothing.
    let before = track.offset();
    track.advance(ids[0], 2);
    assert_eq!(
        decode_offset(&track.offset()).map(|o| match o {
            Offset::Reference(r) => r.counter,
            Offset::Inline(_) => 0,
        }),
        decode_offset(&before).map(|o| match o {
            Offset::Reference(r) => r.counter,
            Offset::Inline(_) => 0,
        })
    );
}

#[test]
fn ended_tracks_are_kept_then_make_room_and_a_full_table_of_live_ones_declines() {
    let tracks = table();
    let many: BTreeMap<_, _> = (0..5).map(|_| (conv(), 1)).collect();
    let first = OffsetTrack::new(tracks.clone(), "a".into(), many.clone());
    let offset = first.offset();
    drop(first);
    // Ended, but kept for its client to come back.
    assert!(matches!(tracks.resolve(&offset, "a"), Resolved::Recover(_)));
    let live: Vec<_> = (0..3)
        .map(|i| OffsetTrack::new(tracks.clone(), format!("live{i}"), many.clone()))
        .collect();
    // The ended track made room for the third live one.
    assert_eq!(tracks.len(), 3);
    assert_eq!(tracks.resolve(&offset, "a"), Resolved::Declined);
    assert!(live.iter().all(|t| t.offset().starts_with("r3.")));
    let overflow = OffsetTrack::new(tracks.clone(), "late".into(), many);
    assert_eq!(overflow.offset(), "x3.");
    assert_eq!(
        tracks.resolve(&overflow.offset(), "late"),
        Resolved::Declined
    );
}

#[test]
fn after_a_declined_recovery_offsets_recover_only_once_the_client_said_what_it_has() {
    let tracks = table();
    let (known, sent) = (conv(), conv());
    let mut track = OffsetTrack::unknown(tracks.clone(), "v".into());
    track.advance(sent, 4);
    assert_eq!(track.offset(), "x3.");
    assert_eq!(tracks.resolve(&track.offset(), "v"), Resolved::Declined);
    // The resume's cursors, merged with what was sent meanwhile (never lowered).
    track.caught_up(&BTreeMap::from([(known, 9), (sent, 2)]));
    let Resolved::Recover(p) = tracks.resolve(&track.offset(), "v") else {
        panic!("known positions recover")
    };
    assert_eq!(p.seqs, BTreeMap::from([(known, 9), (sent, 4)]));
}
