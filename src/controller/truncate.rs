//! Text from outside (ECS error messages above all) bounded before it is written to status or
//! published in an event.
//!
//! An endpoint may answer with megabytes of message: copied into status, the API server refuses
//! the write (and the reconcile fails over and over); kept in events and in the publisher's
//! memory, every copy is held. The events.k8s.io `note` is limited to 1 KB, so that is the bound
//! for both.

/// The most bytes of a message written to status or published in an event.
pub(crate) const MESSAGE_LIMIT: usize = 1024;

/// Ends a cut message, so a reader knows there was more.
const CUT: &str = "… (truncated)";

/// The most bytes of an error code written to status or used as an event's reason (the
/// events.k8s.io `reason` limit).
pub(crate) const CODE_LIMIT: usize = 128;

/// `message` if it fits in [`MESSAGE_LIMIT`] bytes; otherwise its beginning, cut on a
/// character boundary, and [`CUT`].
pub(crate) fn truncated(message: String) -> String {
    truncated_to(message, MESSAGE_LIMIT)
}

/// `text` if it fits in `limit` bytes (≥ the length of [`CUT`]); otherwise its beginning, cut on
/// a character boundary, and [`CUT`].
pub(crate) fn truncated_to(mut message: String, limit: usize) -> String {
    if message.len() > limit {
        // `str::floor_char_boundary` is newer than the crate's MSRV.
        let mut end = limit.saturating_sub(CUT.len());
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str(CUT);
        message.shrink_to_fit();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_code_is_cut_to_the_reason_limit() {
        let code = truncated_to(format!("Throttling.{}", "ü".repeat(500)), CODE_LIMIT);
        assert!(code.len() <= CODE_LIMIT && code.starts_with("Throttling.ü"));
        assert_eq!(
            truncated_to("InternalError".into(), CODE_LIMIT),
            "InternalError"
        );
    }

    #[test]
    fn a_message_that_fits_is_kept_whole() {
        let exact = "a".repeat(MESSAGE_LIMIT);
        assert_eq!(truncated(exact.clone()), exact);
        assert_eq!(truncated(String::new()), "");
    }

    #[test]
    fn a_long_message_is_cut_on_a_character_boundary_and_marked() {
        // 1-, 2-, 3- and 4-byte characters: every offset of the cut lands inside one of them.
        for filler in ["a", "é", "错", "🦀"] {
            for prefix in 0..4 {
                let message = format!("{}{}", "x".repeat(prefix), filler.repeat(2000));
                let cut = truncated(message.clone());
                assert!(cut.len() <= MESSAGE_LIMIT, "{filler}: {} bytes", cut.len());
                assert!(
                    cut.len() > MESSAGE_LIMIT - CUT.len() - 4,
                    "{filler}: too short"
                );
                assert!(cut.ends_with(CUT));
                let kept = cut.strip_suffix(CUT).unwrap();
                assert!(message.starts_with(kept), "{filler}: the beginning is kept");
                assert!(cut.capacity() < 2 * MESSAGE_LIMIT, "the rest is not held");
            }
        }
    }
}
