//! The hub's placement decisions, pure: where a channel belongs under a slot map, and which
//! subscriptions a new slot map moves. The manager carries them out (links, SUBSCRIBE,
//! UNSUBSCRIBE) and keeps its state; nothing here does I/O, so each case is a unit test.

use super::topology::{Node, Topology, slot};

/// Where `channel` belongs: the master serving its slot, and which of that node's `lanes`
/// connections carries it. None while no node claims the slot (it waits for a new map).
pub(super) fn home(topology: Option<&Topology>, channel: &str, lanes: usize) -> Option<(Node, usize)> {
    let node = topology?.node_for(slot(channel.as_bytes()))?;
    Some((node.clone(), lane(channel, lanes)))
}

/// The subscriptions a new slot map moves: each placed channel (with the node it is
/// subscribed on) whose slot `t` gives to another master, or to none.
pub(super) fn moved<'a>(t: &Topology, placed: impl IntoIterator<Item = (&'a str, &'a Node)>) -> Vec<String> {
    let mut out: Vec<String> = placed
        .into_iter()
        .filter(|(c, on)| t.node_for(slot(c.as_bytes())) != Some(*on))
        .map(|(c, _)| c.to_string())
        .collect();
    out.sort();
    out
}

/// Whether a link may close: it carries no channel and its node is no longer a master.
pub(super) fn idle(carries: usize, node: &Node, masters: &[Node]) -> bool {
    carries == 0 && !masters.contains(node)
}

/// Which of a node's connections carries a channel: the same one for as long as it lives.
fn lane(channel: &str, lanes: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    channel.hash(&mut h);
    (h.finish() as usize) % lanes.max(1)
}

#[cfg(test)]
mod tests {
    use super::super::topology::node;
    use super::*;

    /// Two channels whose slots fall in the first and the second half of the slot space.
    fn two_channels() -> (String, String) {
        let mut low = None;
        let mut high = None;
        for i in 0.. {
            let c = format!("drift:{{t/w-{i}}}:ch");
            match slot(c.as_bytes()) {
                s if s < 8192 && low.is_none() => low = Some(c),
                s if s >= 8192 && high.is_none() => high = Some(c),
                _ => {}
            }
            if low.is_some() && high.is_some() {
                break;
            }
        }
        (low.unwrap(), high.unwrap())
    }

    #[test]
    fn a_channel_belongs_to_the_master_of_its_slot_on_one_lane_for_good() {
        let (low, high) = two_channels();
        let t = Topology::of_ranges(vec![(0, 8191, node(7000)), (8192, 16383, node(7001))]);
        let (n, lane) = home(Some(&t), &low, 2).unwrap();
        assert_eq!(n, node(7000));
        assert_eq!(home(Some(&t), &low, 2).unwrap().1, lane, "the same lane every time");
        assert!(lane < 2);
        assert_eq!(home(Some(&t), &high, 2).unwrap().0, node(7001));
        assert_eq!(home(Some(&t), &high, 1).unwrap().1, 0);
    }

    #[test]
    fn a_channel_whose_slot_no_node_claims_waits_for_the_next_map() {
        let (low, high) = two_channels();
        let t = Topology::of_ranges(vec![(8192, 16383, node(7001))]);
        assert_eq!(home(Some(&t), &low, 2), None);
        assert!(home(Some(&t), &high, 2).is_some());
        assert_eq!(home(None, &high, 2), None, "no map read yet");
    }

    #[test]
    fn a_slot_migration_moves_only_the_channels_of_the_slots_that_moved() {
        let (low, high) = two_channels();
        let (a, b) = (node(7000), node(7001));
        // Before: low on a, high on b. Then the low half migrates to b.
        let after = Topology::of_ranges(vec![(0, 16383, b.clone())]);
        let placed = [(low.as_str(), &a), (high.as_str(), &b)];
        assert_eq!(moved(&after, placed), vec![low.clone()]);
        // Nothing changed: nothing moves.
        let same = Topology::of_ranges(vec![(0, 8191, a.clone()), (8192, 16383, b.clone())]);
        assert!(moved(&same, placed).is_empty());
    }

    #[test]
    fn a_failover_moves_every_channel_of_the_old_master_and_closes_its_idle_links() {
        let (low, high) = two_channels();
        let (a, b, replica) = (node(7000), node(7001), node(7002));
        // The replica of a took over a's slots.
        let after = Topology::of_ranges(vec![(0, 8191, replica.clone()), (8192, 16383, b.clone())]);
        let placed = [(low.as_str(), &a), (high.as_str(), &b)];
        assert_eq!(moved(&after, placed), vec![low.clone()]);
        assert_eq!(home(Some(&after), &low, 2).unwrap().0, replica);
        let masters = after.masters();
        assert!(idle(0, &a, &masters), "the old master's empty link closes");
        assert!(!idle(1, &a, &masters), "not while it still carries a channel");
        assert!(!idle(0, &b, &masters), "a master's links stay, even empty");
        // Slots no node claims (a master lost with no replica): its channels move, to nowhere yet.
        let orphaned = Topology::of_ranges(vec![(8192, 16383, b.clone())]);
        assert_eq!(moved(&orphaned, placed), vec![low]);
    }
}
