//! Property tests of the SSE codec: splitting a stream at arbitrary byte positions gives
//! the same events, encoding then decoding gives the events back, and no input makes the
//! decoder panic or hold more than its limit.

use ccproxy_formats::sse::{DecodeError, Decoder, Event};
use proptest::prelude::*;

fn decode_in_pieces(bytes: &[u8], cuts: &[usize], limit: usize) -> (Vec<Event>, Vec<DecodeError>) {
    let mut decoder = Decoder::with_max_event_size(limit);
    let mut events = Vec::new();
    let mut errors = Vec::new();
    let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut start = 0;
    for cut in cuts.into_iter().chain([bytes.len()]) {
        if let Err(error) = decoder.push(&bytes[start..cut], &mut events) {
            errors.push(error);
        }
        start = cut;
    }
    if let Err(error) = decoder.finish(&mut events) {
        errors.push(error);
    }
    (events, errors)
}

/// Bytes that look like an event stream: field names, colons, spaces, every line ending,
/// comments, `[DONE]`, multi-byte UTF-8 and the odd invalid byte.
fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"data: ".to_vec()),
        Just(b"data:".to_vec()),
        Just(b"event: ".to_vec()),
        Just(b"id: ".to_vec()),
        Just(b"retry: 10".to_vec()),
        Just(b": keep-alive".to_vec()),
        Just(b"[DONE]".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n\n".to_vec()),
        Just(b":".to_vec()),
        Just(b" ".to_vec()),
        Just("é✓".as_bytes().to_vec()),
        Just(vec![0xFF]),
        Just(b"\xEF\xBB\xBF".to_vec()),
        "[a-z{}\"]{1,8}".prop_map(String::into_bytes),
    ];
    prop::collection::vec(token, 0..60).prop_map(|tokens| tokens.concat())
}

fn event() -> impl Strategy<Value = Event> {
    (
        prop::option::of("[a-z_.]{0,12}"),
        "(\\PC|\n|\r\n|\r| ){0,40}",
        prop::option::of("[0-9a-z]{0,6}"),
    )
        .prop_map(|(event, data, id)| Event { event, data, id })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_split_points_give_the_same_events(bytes in stream_bytes(), cuts in prop::collection::vec(any::<usize>(), 0..12)) {
        let whole = decode_in_pieces(&bytes, &[], usize::MAX);
        let pieces = decode_in_pieces(&bytes, &cuts, usize::MAX);
        prop_assert_eq!(whole, pieces);
    }

    #[test]
    fn split_points_do_not_change_what_the_limit_refuses(bytes in stream_bytes(), cuts in prop::collection::vec(any::<usize>(), 0..12), limit in 1usize..64) {
        let (whole, _) = decode_in_pieces(&bytes, &[], limit);
        let (pieces, _) = decode_in_pieces(&bytes, &cuts, limit);
        prop_assert_eq!(whole, pieces);
    }

    #[test]
    fn byte_by_byte_gives_the_same_events(bytes in stream_bytes()) {
        let whole = decode_in_pieces(&bytes, &[], usize::MAX);
        let cuts: Vec<usize> = (0..bytes.len()).collect();
        prop_assert_eq!(whole, decode_in_pieces(&bytes, &cuts, usize::MAX));
    }

    #[test]
    fn encoded_events_decode_back(events in prop::collection::vec(event(), 0..8), cuts in prop::collection::vec(any::<usize>(), 0..8)) {
        let mut wire = Vec::new();
        for event in &events {
            event.encode(&mut wire);
        }
        let (decoded, errors) = decode_in_pieces(&wire, &cuts, usize::MAX);
        prop_assert!(errors.is_empty());
        let expected: Vec<Event> = events
            .into_iter()
            .map(|event| Event { data: event.data.replace("\r\n", "\n").replace('\r', "\n"), ..event })
            .collect();
        prop_assert_eq!(decoded, expected);
    }

    #[test]
    fn the_size_limit_holds_for_any_input(bytes in stream_bytes(), cuts in prop::collection::vec(any::<usize>(), 0..12), limit in 1usize..64) {
        let (events, errors) = decode_in_pieces(&bytes, &cuts, limit);
        for event in &events {
            prop_assert!(event.data.len() <= limit, "{} bytes of data passed a limit of {}", event.data.len(), limit);
        }
        for error in errors {
            prop_assert_eq!(error, DecodeError::EventTooLarge { limit });
        }
    }
}
