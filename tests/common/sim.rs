//! The simulated network both whole-system simulations use (sim_membership,
//! sim_cluster): two hosts, any number of links, each direction of each link up or
//! down with its own loss, an optional duplication rate, and a random delay. Time
//! is in ticks whose unit the simulation chooses (µs for membership, ms for the
//! pair), so each keeps its schedules reproducible from its seed.
//!
//! Packets are delivered in the order they are due, ties in the order they were
//! sent; a tag travels with each packet for the simulation's own bookkeeping
//! (which keepalives were genuine, say) and is never seen by the node.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::Rng;

/// One direction of one link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkDir {
    pub up: bool,
    /// Per mille of packets lost.
    pub loss: u64,
}

impl LinkDir {
    pub const WORKING: LinkDir = LinkDir { up: true, loss: 0 };

    /// Up and losing nothing: whatever is sent arrives.
    pub fn works(&self) -> bool {
        self.up && self.loss == 0
    }
}

/// A packet due at `at` for host `to` over `link`.
#[derive(Debug, Clone)]
pub struct Packet<T> {
    pub at: u64,
    pub to: usize,
    pub link: usize,
    pub bytes: Vec<u8>,
    pub tag: T,
}

struct Flight<T>(u64, u64, Packet<T>);

impl<T> PartialEq for Flight<T> {
    fn eq(&self, o: &Self) -> bool {
        (self.0, self.1) == (o.0, o.1)
    }
}
impl<T> Eq for Flight<T> {}
impl<T> PartialOrd for Flight<T> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for Flight<T> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.0, self.1).cmp(&(o.0, o.1))
    }
}

pub struct SimNet<T> {
    /// links[l][from]: the direction from host `from` to the other.
    links: Vec<[LinkDir; 2]>,
    /// Per mille of sent packets that arrive twice; `None` draws nothing (a
    /// simulation that never duplicates keeps the random stream it always had).
    pub dup: Option<u64>,
    /// The delay of each copy: `min + below(span)` ticks.
    pub delay_min: u64,
    pub delay_span: u64,
    heap: BinaryHeap<Reverse<Flight<T>>>,
    order: u64,
}

impl<T: Clone> SimNet<T> {
    pub fn new(links: usize, delay_min: u64, delay_span: u64) -> Self {
        SimNet {
            links: vec![[LinkDir::WORKING; 2]; links],
            dup: None,
            delay_min,
            delay_span,
            heap: BinaryHeap::new(),
            order: 0,
        }
    }

    pub fn links(&self) -> usize {
        self.links.len()
    }

    pub fn dir(&self, link: usize, from: usize) -> LinkDir {
        self.links[link][from]
    }

    pub fn dir_mut(&mut self, link: usize, from: usize) -> &mut LinkDir {
        &mut self.links[link][from]
    }

    /// Every direction of every link up and lossless.
    pub fn heal(&mut self) {
        self.links.iter_mut().for_each(|l| *l = [LinkDir::WORKING; 2]);
    }

    /// Some link carries everything both ways.
    pub fn connected(&self) -> bool {
        self.links.iter().any(|l| l.iter().all(LinkDir::works))
    }

    /// Some link carries everything from `from`.
    pub fn carries_from(&self, from: usize) -> bool {
        self.links.iter().any(|l| l[from].works())
    }

    /// `bytes` sent by host `from` at `now` over every link (a broadcast, as the
    /// daemon sends its keepalives).
    pub fn send(&mut self, rng: &mut Rng, now: u64, from: usize, bytes: &[u8], tag: T) {
        for link in 0..self.links.len() {
            let dir = self.links[link][from];
            if !dir.up || rng.chance(dir.loss) {
                continue;
            }
            let copies = match self.dup {
                Some(d) if rng.chance(d) => 2,
                _ => 1,
            };
            for _ in 0..copies {
                let at = now + self.delay_min + rng.below(self.delay_span);
                self.inject(at, 1 - from, link, bytes.to_vec(), tag.clone());
            }
        }
    }

    /// A packet put on the wire as is (an adversary's replay or forgery).
    pub fn inject(&mut self, at: u64, to: usize, link: usize, bytes: Vec<u8>, tag: T) {
        self.order += 1;
        self.heap.push(Reverse(Flight(
            at,
            self.order,
            Packet {
                at,
                to,
                link,
                bytes,
                tag,
            },
        )));
    }

    /// When the next packet is due.
    pub fn next_at(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse(f)| f.0)
    }

    /// The next packet due at or before `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<Packet<T>> {
        if self.next_at()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse(f)| f.2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_come_in_due_order_and_a_cut_direction_carries_nothing() {
        let mut rng = Rng(7);
        let mut net: SimNet<u32> = SimNet::new(2, 1, 10);
        net.dir_mut(1, 0).up = false;
        net.send(&mut rng, 0, 0, b"x", 1);
        net.send(&mut rng, 0, 1, b"y", 2);
        let mut got = Vec::new();
        let mut last = 0;
        while let Some(p) = net.pop_due(100) {
            assert!(p.at >= last && (1..=10).contains(&p.at));
            last = p.at;
            got.push((p.to, p.link, p.tag));
        }
        got.sort();
        assert_eq!(got, vec![(0, 0, 2), (0, 1, 2), (1, 0, 1)]);
        assert!(net.connected(), "link 0 still works both ways");
        net.dir_mut(0, 1).loss = 1000;
        assert!(!net.connected() && net.carries_from(0) && !net.dir(0, 1).works());
        net.heal();
        assert!(net.connected());
    }
}
