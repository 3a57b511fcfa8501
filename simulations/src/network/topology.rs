//! Who sits where and how they are linked: sites (LANs) of endpoints with
//! their access capacities, WAN links between each site and a core, latency
//! and loss per path, and the connection graph nodes start with.
//!
//! Node 0 is the seeder (the vendor's node) in the site the scenario names;
//! endpoints follow site by site, so a node's site is found by its index. A
//! path inside a site costs the site's LAN latency; a path between sites goes
//! up one site's WAN link to the core and down the other's, so its latency is
//! the sum of the two WAN latencies and its loss combines both. Bulk transfers
//! between sites also share the two sites' WAN capacities (see
//! [`super::flows`]).

use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;
use std::collections::BTreeSet;

/// One site: a LAN of endpoints behind a WAN link.
#[derive(Clone, Debug, PartialEq)]
pub struct Site {
    /// Its name (for reports).
    pub name: String,
    /// Endpoints in it.
    pub endpoints: usize,
    /// Each endpoint's upload capacity, bytes per second (`INFINITY`: unlimited).
    pub upload: f64,
    /// Each endpoint's download capacity, bytes per second.
    pub download: f64,
    /// One-way latency inside the site, milliseconds.
    pub lan_latency_ms: u64,
    /// One-way latency between the site and the core, milliseconds.
    pub wan_latency_ms: u64,
    /// Capacity of the site's WAN link towards the core, bytes per second.
    pub wan_upload: f64,
    /// Capacity of the site's WAN link from the core, bytes per second.
    pub wan_download: f64,
    /// Probability that a message inside the site is lost.
    pub lan_loss: f64,
    /// Probability that a message crossing this site's WAN link is lost.
    pub wan_loss: f64,
}

impl Site {
    /// A site with unlimited capacity, `latency_ms` on every path and no loss.
    pub fn unlimited(name: &str, endpoints: usize, latency_ms: u64) -> Site {
        Site {
            name: name.into(),
            endpoints,
            upload: f64::INFINITY,
            download: f64::INFINITY,
            lan_latency_ms: latency_ms,
            wan_latency_ms: latency_ms / 2,
            wan_upload: f64::INFINITY,
            wan_download: f64::INFINITY,
            lan_loss: 0.0,
            wan_loss: 0.0,
        }
    }
}

/// The whole network's layout.
#[derive(Clone, Debug, PartialEq)]
pub struct Topology {
    /// The sites, in node order.
    pub sites: Vec<Site>,
    /// The site the seeder sits in.
    pub seeder_site: usize,
    /// The seeder's upload capacity, bytes per second.
    pub seeder_upload: f64,
    /// The seeder's download capacity, bytes per second.
    pub seeder_download: f64,
    /// Target average degree: a ring inside each site plus `(degree - 2) / 2` connections each node opens.
    pub degree: usize,
    /// Share of a node's connections opened inside its own site (the rest go to other sites).
    pub local_fraction: f64,
    /// Connections the seeder opens.
    pub seeder_degree: usize,
    /// Every endpoint connects to the seeder (as agents that all dial the
    /// vendor's bootstrap address do), instead of `seeder_degree` random dials.
    pub seeder_dialled_by_all: bool,
    /// Site of every node (index 0 is the seeder).
    node_site: Vec<u32>,
    /// First node index of every site's endpoints.
    first: Vec<usize>,
}

impl Topology {
    /// A layout over `sites`, the seeder in `seeder_site`.
    pub fn new(
        sites: Vec<Site>,
        seeder_site: usize,
        seeder_upload: f64,
        seeder_download: f64,
        degree: usize,
        local_fraction: f64,
    ) -> Topology {
        let mut node_site = vec![seeder_site as u32];
        let mut first = Vec::with_capacity(sites.len());
        for (s, site) in sites.iter().enumerate() {
            first.push(node_site.len());
            node_site.extend(std::iter::repeat_n(s as u32, site.endpoints));
        }
        Topology {
            sites,
            seeder_site,
            seeder_upload,
            seeder_download,
            degree,
            local_fraction,
            seeder_degree: degree,
            seeder_dialled_by_all: false,
            node_site,
            first,
        }
    }

    /// One site of `endpoints` with unlimited capacity and `latency_ms` between any two nodes.
    pub fn flat(endpoints: usize, latency_ms: u64, degree: usize) -> Topology {
        Topology::new(
            vec![Site::unlimited("lan", endpoints, latency_ms)],
            0,
            f64::INFINITY,
            f64::INFINITY,
            degree,
            1.0,
        )
    }

    /// Nodes, the seeder included.
    pub fn nodes(&self) -> usize {
        self.node_site.len()
    }

    /// The site of node `i`.
    pub fn site_of(&self, i: usize) -> usize {
        self.node_site.get(i).copied().unwrap_or(0) as usize
    }

    /// The node indices of site `s`'s endpoints.
    pub fn endpoints_of(&self, s: usize) -> std::ops::Range<usize> {
        match (self.first.get(s), self.sites.get(s)) {
            (Some(&f), Some(site)) => f..f + site.endpoints,
            _ => 0..0,
        }
    }

    /// Node `i`'s upload capacity.
    pub fn upload(&self, i: usize) -> f64 {
        if i == 0 {
            self.seeder_upload
        } else {
            self.sites[self.site_of(i)].upload
        }
    }

    /// Node `i`'s download capacity.
    pub fn download(&self, i: usize) -> f64 {
        if i == 0 {
            self.seeder_download
        } else {
            self.sites[self.site_of(i)].download
        }
    }

    /// One-way latency from `a` to `b`, milliseconds.
    pub fn latency_ms(&self, a: usize, b: usize) -> u64 {
        let (sa, sb) = (self.site_of(a), self.site_of(b));
        if sa == sb {
            self.sites[sa].lan_latency_ms
        } else {
            self.sites[sa].wan_latency_ms + self.sites[sb].wan_latency_ms
        }
    }

    /// Probability that a message from `a` to `b` is lost.
    pub fn loss(&self, a: usize, b: usize) -> f64 {
        let (sa, sb) = (self.site_of(a), self.site_of(b));
        if sa == sb {
            self.sites[sa].lan_loss
        } else {
            1.0 - (1.0 - self.sites[sa].wan_loss) * (1.0 - self.sites[sb].wan_loss)
        }
    }

    /// The starting connection graph, as sorted pairs `(a, b)` with `a < b`.
    ///
    /// Each site's endpoints form a ring (so a site is connected on its own)
    /// and the first endpoints of consecutive sites are linked (so the sites
    /// are). Then, like a libp2p connection manager with low and high
    /// watermarks, every endpoint dials random endpoints until it has
    /// `degree` connections — a `local_fraction` of the dials inside its own
    /// site — and an endpoint accepts connections up to one and a half times
    /// `degree`; so degrees stay within `[degree, 1.5 × degree]` wherever the
    /// site is large enough. (An earlier version opened a fixed number of
    /// connections per node, which spread degrees widely; in a swarm a node's
    /// download share grows with its degree, so the spread showed up as
    /// stragglers.) The seeder opens `seeder_degree` connections to endpoints
    /// anywhere.
    pub fn edges(&self, rng: &mut ChaCha8Rng) -> BTreeSet<(usize, usize)> {
        let total = self.nodes();
        let mut edges = BTreeSet::new();
        let mut degree = vec![0usize; total];
        let add =
            |edges: &mut BTreeSet<(usize, usize)>, degree: &mut [usize], a: usize, b: usize| {
                if a != b && edges.insert((a.min(b), a.max(b))) {
                    degree[a] += 1;
                    degree[b] += 1;
                }
            };
        let pick = |rng: &mut ChaCha8Rng, range: std::ops::Range<usize>| -> Option<usize> {
            let len = range.len() as u64;
            (len > 0).then(|| range.start + (rng.next_u64() % len) as usize)
        };
        for s in 0..self.sites.len() {
            let r = self.endpoints_of(s);
            if r.len() >= 2 {
                for a in r.clone() {
                    let b = if a + 1 == r.end { r.start } else { a + 1 };
                    add(&mut edges, &mut degree, a, b);
                }
            }
        }
        let gateways: Vec<usize> = (0..self.sites.len())
            .filter_map(|s| {
                let r = self.endpoints_of(s);
                (!r.is_empty()).then_some(r.start)
            })
            .collect();
        for w in gateways.windows(2) {
            add(&mut edges, &mut degree, w[0], w[1]);
        }
        let cap = self.degree + self.degree / 2;
        let local_cut = (self.local_fraction.clamp(0.0, 1.0) * u64::MAX as f64) as u64;
        for a in 1..total {
            let own = self.endpoints_of(self.site_of(a));
            // Bounded: in a small or saturated site the target may be out of reach.
            let mut attempts = 0;
            while degree[a] < self.degree && attempts < 8 * self.degree {
                attempts += 1;
                let local = rng.next_u64() <= local_cut || own.len() + 1 == total;
                let b = if local {
                    pick(rng, own.clone())
                } else {
                    pick(rng, 1..total)
                };
                if let Some(b) = b {
                    if degree[b] < cap {
                        add(&mut edges, &mut degree, a, b);
                    }
                }
            }
        }
        if self.seeder_dialled_by_all {
            for b in 1..total {
                add(&mut edges, &mut degree, 0, b);
            }
        }
        for _ in 0..self.seeder_degree.min(total.saturating_sub(1)) {
            if let Some(b) = pick(rng, 1..total) {
                add(&mut edges, &mut degree, 0, b);
            }
        }
        edges
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    fn two_sites() -> Topology {
        let mut a = Site::unlimited("a", 10, 2);
        a.wan_latency_ms = 10;
        let mut b = Site::unlimited("b", 5, 4);
        b.wan_latency_ms = 30;
        b.wan_loss = 0.5;
        Topology::new(vec![a, b], 0, 1e6, 1e6, 6, 0.8)
    }

    #[test]
    fn nodes_are_laid_out_site_by_site() {
        let t = two_sites();
        assert_eq!(t.nodes(), 16);
        assert_eq!(t.site_of(0), 0);
        assert_eq!(t.endpoints_of(0), 1..11);
        assert_eq!(t.endpoints_of(1), 11..16);
        assert_eq!(t.site_of(11), 1);
        assert_eq!(t.upload(0), 1e6);
    }

    #[test]
    fn latency_and_loss_follow_the_path() {
        let t = two_sites();
        assert_eq!(t.latency_ms(1, 2), 2);
        assert_eq!(t.latency_ms(12, 13), 4);
        assert_eq!(t.latency_ms(1, 12), 40);
        assert_eq!(t.loss(1, 2), 0.0);
        assert!((t.loss(1, 12) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn degrees_stay_between_the_watermarks() {
        let t = Topology::new(vec![Site::unlimited("a", 2000, 1)], 0, 1e6, 1e6, 8, 1.0);
        let edges = t.edges(&mut ChaCha8Rng::seed_from_u64(9));
        let mut degree = vec![0usize; t.nodes()];
        for &(a, b) in &edges {
            degree[a] += 1;
            degree[b] += 1;
        }
        // The seeder's eight connections may lift a few endpoints one past the cap.
        for (i, &d) in degree.iter().enumerate().skip(1) {
            assert!((8..=13).contains(&d), "node {i} has degree {d}");
        }
    }

    #[test]
    fn the_graph_is_connected_and_mostly_local() {
        let t = two_sites();
        let edges = t.edges(&mut ChaCha8Rng::seed_from_u64(3));
        let mut reach = BTreeSet::from([0usize]);
        loop {
            let before = reach.len();
            for &(a, b) in &edges {
                if reach.contains(&a) || reach.contains(&b) {
                    reach.insert(a);
                    reach.insert(b);
                }
            }
            if reach.len() == before {
                break;
            }
        }
        assert_eq!(reach.len(), t.nodes());
        let cross = edges
            .iter()
            .filter(|&&(a, b)| a != 0 && t.site_of(a) != t.site_of(b))
            .count();
        assert!(cross * 2 < edges.len(), "{cross} of {}", edges.len());
    }
}
