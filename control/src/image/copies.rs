//! Where this box stands among the copies of images' data (docs/cluster.md, "Images across
//! boxes"): the name its copies are recorded under, and how many verified copies make an
//! image active, `min(2, boxes)`. A box alone needs its own; a member's count follows the
//! site's membership, kept current by the image replicator.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The most copies an image waits for before it becomes active.
pub const COPIES_WANTED: usize = 2;

#[derive(Debug)]
pub struct CopyRule {
    holder: String,
    needed: AtomicUsize,
}

impl CopyRule {
    /// A box alone: its own copy is the only one, and enough.
    pub fn alone(holder: &str) -> CopyRule {
        CopyRule {
            holder: holder.to_owned(),
            needed: AtomicUsize::new(1),
        }
    }

    /// A member of a site of `boxes` boxes.
    pub fn member(holder: &str, boxes: usize) -> CopyRule {
        let rule = CopyRule::alone(holder);
        rule.set_boxes(boxes);
        rule
    }

    /// The name this box's copies are recorded under.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// How many verified copies make an image active.
    pub fn needed(&self) -> usize {
        self.needed.load(Ordering::Relaxed)
    }

    /// The site now has `boxes` members (this one counted even if the read missed it).
    pub fn set_boxes(&self, boxes: usize) {
        self.needed
            .store(boxes.clamp(1, COPIES_WANTED), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_needed_are_two_or_every_box_if_fewer() {
        assert_eq!(CopyRule::alone("b").needed(), 1);
        let rule = CopyRule::member("b", 0);
        assert_eq!(rule.needed(), 1);
        for (boxes, needed) in [(1, 1), (2, 2), (3, 2), (5, 2)] {
            rule.set_boxes(boxes);
            assert_eq!(rule.needed(), needed, "{boxes} boxes");
        }
    }
}
