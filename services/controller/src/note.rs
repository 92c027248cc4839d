//! Event notes that the API server accepts. events.k8s.io refuses an Event
//! whose note is over 1024 bytes (`NoteLengthLimit` in kubernetes
//! pkg/apis/core/validation/events.go, checked with Go's `len`, so bytes),
//! and a refused Event is lost. Every note the controller publishes goes
//! through [`fit`]: a longer one is cut on a character boundary and ends in
//! [`TRUNCATED`], so a reader knows there was more (the status condition keeps
//! the whole message). What the notes say is up to their callers.

/// The most bytes events.k8s.io accepts in an Event's note.
pub const MAX_NOTE_BYTES: usize = 1024;

/// The end of a note that was cut.
pub const TRUNCATED: &str = " … (truncated)";

/// `note` if it fits, else its longest prefix that fits with [`TRUNCATED`] after it.
pub fn fit(note: String) -> String {
    if note.len() <= MAX_NOTE_BYTES {
        return note;
    }
    let cut = note.floor_char_boundary(MAX_NOTE_BYTES - TRUNCATED.len());
    let mut fitted = String::with_capacity(cut + TRUNCATED.len());
    fitted.push_str(&note[..cut]);
    fitted.push_str(TRUNCATED);
    fitted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_within_the_limit_is_kept_whole() {
        assert_eq!(fit("published ConfigMap p-config".into()), "published ConfigMap p-config");
        let exactly = "x".repeat(MAX_NOTE_BYTES);
        assert_eq!(fit(exactly.clone()), exactly);
    }

    #[test]
    fn a_longer_note_is_cut_to_the_limit_and_marked() {
        let long = format!("spec.queues.orders.name: {}", "q".repeat(2000));
        let fitted = fit(long.clone());
        assert_eq!(fitted.len(), MAX_NOTE_BYTES);
        assert!(fitted.ends_with(TRUNCATED), "{fitted}");
        assert!(long.starts_with(fitted.strip_suffix(TRUNCATED).unwrap()), "a prefix of the original");
        assert_eq!(fit("y".repeat(MAX_NOTE_BYTES + 1)).len(), MAX_NOTE_BYTES);
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // Four-byte characters after one ASCII byte: no offset near the limit is a boundary but every fourth.
        for pad in 0..4 {
            let long = format!("{}{}", "a".repeat(pad), "🦀".repeat(400));
            let fitted = fit(long.clone());
            assert!(fitted.len() <= MAX_NOTE_BYTES, "{} bytes", fitted.len());
            let kept = fitted.strip_suffix(TRUNCATED).expect("marked");
            assert!(long.starts_with(kept));
            // The longest prefix that fits: one more character would not.
            assert!(kept.len() + TRUNCATED.len() + '🦀'.len_utf8() > MAX_NOTE_BYTES, "cut {} too early", kept.len());
        }
    }
}
