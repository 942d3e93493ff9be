//! The zone index: every zone of a tenant (or of all tenants) in one immutable R-tree.
//!
//! Zones change rarely (a caseworker edits one) and are read on every fix, so the index is
//! immutable: an edit builds a whole new index with [`RTree::bulk_load`] (100k zones take well
//! under a second) and [`SharedIndex`] swaps it in atomically. Readers never wait for an edit
//! and never see half of one.
//!
//! The broad phase compares the point with each zone part's bounding box in the tree; the exact
//! test then runs only on the few candidates, with geo's robust predicates. Each box carries its
//! part's grid, which decides most candidates on the spot; only a point near an edge (or in a
//! circle) looks at the zone itself.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rstar::RTree;
use rstar::primitives::{GeomWithData, Rectangle};
use trygg_core::DeviceId;

use crate::zone::{Cell, CellGrid, Zone, ZoneId};

/// A zone part's bounding box, tagged with (zone number, part number) and the part's grid.
type Entry = GeomWithData<Rectangle<[f64; 2]>, (u32, u32, Option<CellGrid>)>;

/// Why a set of zones cannot be indexed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// Two zones share an id, so their per-device state could not be told apart.
    #[error("zone id {0} is used by more than one zone")]
    DuplicateId(ZoneId),
    /// More zones than the index can number.
    #[error("too many zones: at most {} per index", u32::MAX)]
    TooMany,
}

/// An immutable, bulk-loaded index of zones.
///
/// ```
/// use geo::Point;
/// use trygg_core::DeviceId;
/// use trygg_geofence::{Shape, Zone, ZoneId, ZoneIndex, ZoneKind};
/// let home = Zone::new(
///     ZoneId::new("home"),
///     ZoneKind::StayInside,
///     Shape::Circle { centre: Point::new(11.97, 57.70), radius_m: 150.0 },
/// )?
/// .for_devices([DeviceId::parse("watch-1")?]);
/// let index = ZoneIndex::build(vec![home])?;
/// let hits: Vec<_> = index.containing(11.9701, 57.7001).map(|z| z.id().as_str()).collect();
/// assert_eq!(hits, ["home"]);
/// assert_eq!(index.zones_for(&DeviceId::parse("watch-1")?).count(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ZoneIndex {
    zones: Vec<Zone>,
    tree: RTree<Entry>,
    by_device: HashMap<DeviceId, Vec<u32>>,
}

impl ZoneIndex {
    /// Validates ids and builds the index in one bulk load.
    pub fn build(zones: Vec<Zone>) -> Result<Self, IndexError> {
        if u32::try_from(zones.len()).is_err() {
            return Err(IndexError::TooMany);
        }
        let mut ids: Vec<&ZoneId> = zones.iter().map(Zone::id).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(IndexError::DuplicateId(w[0].clone()));
        }
        let mut entries = Vec::with_capacity(zones.len());
        let mut by_device: HashMap<DeviceId, Vec<u32>> = HashMap::new();
        for (z, zone) in (0u32..).zip(&zones) {
            for ((p, aabb), grid) in (0u32..).zip(zone.envelopes()).zip(zone.grids()) {
                entries.push(GeomWithData::new(Rectangle::from_aabb(aabb), (z, p, grid)));
            }
            for d in zone.devices() {
                by_device.entry(d.clone()).or_default().push(z);
            }
        }
        Ok(Self { zones, tree: RTree::bulk_load(entries), by_device })
    }

    /// An index with no zones.
    pub fn empty() -> Self {
        Self { zones: Vec::new(), tree: RTree::new(), by_device: HashMap::new() }
    }

    /// Number of zones.
    pub fn len(&self) -> usize {
        self.zones.len()
    }

    /// Whether there are no zones.
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    /// All zones, in the order they were given to [`ZoneIndex::build`].
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// Every zone containing `(lon, lat)` (boundary included), each once, in no set order.
    pub fn containing(&self, lon: f64, lat: f64) -> impl Iterator<Item = &Zone> + '_ {
        self.tree.locate_all_at_point(&[lon, lat]).filter_map(move |e| {
            let (z, part, ref grid) = e.data;
            let (min, max) = (e.geom().lower(), e.geom().upper());
            let cell = grid.as_ref().map(|g| g.cell(min.into(), max.into(), (lon, lat).into()));
            if cell == Some(Cell::Outside) {
                return None;
            }
            let zone = &self.zones[z as usize];
            let hit = (cell == Some(Cell::Inside) || zone.part_contains(part as usize, lon, lat))
                // Parts of a multipolygon may touch at a point: report the zone for its
                // lowest-numbered part only.
                && !(0..part as usize).any(|q| zone.part_contains(q, lon, lat));
            hit.then_some(zone)
        })
    }

    /// The zones that apply to `device`.
    pub fn zones_for<'a>(&'a self, device: &DeviceId) -> impl Iterator<Item = &'a Zone> + 'a {
        let ids = self.by_device.get(device).map(Vec::as_slice).unwrap_or_default();
        ids.iter().map(|&z| &self.zones[z as usize])
    }
}

/// The current index, replaced atomically when zones are edited.
///
/// Readers call [`SharedIndex::load`] per fix (a few nanoseconds, no lock); a caseworker's
/// edit builds a new [`ZoneIndex`] off to the side and calls [`SharedIndex::replace`].
///
/// ```
/// use trygg_geofence::{SharedIndex, ZoneIndex};
/// let shared = SharedIndex::new(ZoneIndex::empty());
/// let before = shared.load();
/// shared.replace(ZoneIndex::empty());
/// assert!(before.is_empty()); // an evaluation in flight keeps the index it started with
/// ```
#[derive(Debug)]
pub struct SharedIndex(ArcSwap<ZoneIndex>);

impl SharedIndex {
    /// Starts with `index`.
    pub fn new(index: ZoneIndex) -> Self {
        Self(ArcSwap::from_pointee(index))
    }

    /// The index as it is now; it stays valid however long it is held.
    pub fn load(&self) -> Arc<ZoneIndex> {
        self.0.load_full()
    }

    /// Makes `index` the current one for every later [`SharedIndex::load`].
    pub fn replace(&self, index: ZoneIndex) {
        self.0.store(Arc::new(index));
    }
}

#[cfg(test)]
mod tests {
    use geo::{MultiPolygon, Point, Polygon, polygon};

    use super::*;
    use crate::zone::{Shape, ZoneKind};

    fn device(s: &str) -> DeviceId {
        DeviceId::parse(s).unwrap()
    }

    fn circle(id: &str, lon: f64, lat: f64, r: f64) -> Zone {
        let shape = Shape::Circle { centre: Point::new(lon, lat), radius_m: r };
        Zone::new(ZoneId::new(id), ZoneKind::StayInside, shape).unwrap()
    }

    fn ids<'a>(it: impl Iterator<Item = &'a Zone>) -> Vec<&'a str> {
        let mut v: Vec<_> = it.map(|z| z.id().as_str()).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn overlapping_zones_are_all_reported_and_distant_ones_are_not() {
        let index = ZoneIndex::build(vec![
            circle("a", 11.0, 57.0, 500.0),
            circle("b", 11.001, 57.0, 500.0),
            circle("far", 18.0, 59.0, 500.0),
        ])
        .unwrap();
        assert_eq!(ids(index.containing(11.0005, 57.0)), ["a", "b"]);
        assert!(index.containing(15.0, 58.0).next().is_none());
    }

    #[test]
    fn a_point_in_the_box_but_outside_the_shape_is_not_reported() {
        let tri = polygon![(x: 11.0, y: 57.0), (x: 11.01, y: 57.0), (x: 11.0, y: 57.01)];
        let z = Zone::new(ZoneId::new("t"), ZoneKind::KeepOut, Shape::Polygon(tri)).unwrap();
        let index = ZoneIndex::build(vec![z]).unwrap();
        assert!(index.containing(11.009, 57.009).next().is_none());
        assert_eq!(ids(index.containing(11.001, 57.001)), ["t"]);
    }

    #[test]
    fn index_answers_as_each_zone_does_where_grids_decide_and_where_edges_do() {
        // A 64-gon and a 2,000-gon (edge-indexed), each with a hole, a two-part multipolygon and
        // a circle, overlapping; probes everywhere around them, on every vertex and beside it.
        let star = |n: usize, r: f64| -> Polygon<f64> {
            let ring: Vec<(f64, f64)> = (0..n)
                .map(|i| {
                    let a = i as f64 / n as f64 * std::f64::consts::TAU;
                    let r = r * (1.0 + 0.3 * (7.0 * a).sin());
                    (11.0 + r * a.cos(), 57.0 + r * a.sin())
                })
                .collect();
            let hole = polygon![(x: 10.999, y: 56.999), (x: 11.001, y: 56.999), (x: 11.001, y: 57.001), (x: 10.999, y: 57.001)];
            Polygon::new(ring.into(), vec![hole.exterior().clone()])
        };
        let (small, large) = (star(64, 0.006), star(2_000, 0.008));
        let parts = MultiPolygon::new(vec![
            polygon![(x: 10.995, y: 56.995), (x: 11.0, y: 56.995), (x: 11.0, y: 57.0)],
            polygon![(x: 11.0, y: 57.0), (x: 11.005, y: 57.0), (x: 11.005, y: 57.005)],
        ]);
        let zones = vec![
            Zone::new(ZoneId::new("small"), ZoneKind::StayInside, Shape::Polygon(small.clone())).unwrap(),
            Zone::new(ZoneId::new("large"), ZoneKind::StayInside, Shape::Polygon(large.clone())).unwrap(),
            Zone::new(ZoneId::new("parts"), ZoneKind::KeepOut, Shape::MultiPolygon(parts)).unwrap(),
            circle("circle", 11.002, 57.002, 300.0),
        ];
        let index = ZoneIndex::build(zones.clone()).unwrap();
        let mut probes: Vec<(f64, f64)> = Vec::new();
        for p in [&small, &large] {
            for c in p.exterior().0.iter().chain(p.interiors().iter().flat_map(|r| &r.0)) {
                probes.extend([(c.x, c.y), (c.x + 1e-6, c.y), (c.x, c.y - 1e-6)]);
            }
        }
        let n = 200;
        for i in 0..=n {
            for j in 0..=n {
                probes.push((10.988 + 0.024 * i as f64 / n as f64, 56.988 + 0.024 * j as f64 / n as f64));
            }
        }
        let mut inside = 0;
        for (lon, lat) in probes {
            let expected = ids(zones.iter().filter(|z| z.contains(lon, lat)));
            inside += usize::from(!expected.is_empty());
            assert_eq!(ids(index.containing(lon, lat)), expected, "at ({lon}, {lat})");
        }
        assert!(inside > 10_000, "most probes fall in some zone: {inside}");
    }

    #[test]
    fn multipolygon_parts_touching_at_a_vertex_report_the_zone_once() {
        let a = polygon![(x: 11.0, y: 57.0), (x: 11.01, y: 57.0), (x: 11.01, y: 57.01), (x: 11.0, y: 57.01)];
        let b =
            polygon![(x: 11.01, y: 57.01), (x: 11.02, y: 57.01), (x: 11.02, y: 57.02), (x: 11.01, y: 57.02)];
        let shape = Shape::MultiPolygon(MultiPolygon::new(vec![a, b]));
        let z = Zone::new(ZoneId::new("m"), ZoneKind::StayInside, shape).unwrap();
        let index = ZoneIndex::build(vec![z]).unwrap();
        assert_eq!(ids(index.containing(11.01, 57.01)), ["m"]);
    }

    #[test]
    fn zone_applies_to_each_of_its_devices() {
        let garden = circle("garden", 11.0, 57.0, 80.0).for_devices([device("w1"), device("w2")]);
        let own = circle("own", 11.0, 57.0, 200.0).for_devices([device("w1")]);
        let index = ZoneIndex::build(vec![garden, own]).unwrap();
        assert_eq!(ids(index.zones_for(&device("w1"))), ["garden", "own"]);
        assert_eq!(ids(index.zones_for(&device("w2"))), ["garden"]);
        assert_eq!(index.zones_for(&device("w3")).count(), 0);
    }

    #[test]
    fn duplicate_zone_ids_are_refused() {
        let err = ZoneIndex::build(vec![circle("a", 11.0, 57.0, 1.0), circle("a", 12.0, 57.0, 1.0)]);
        assert_eq!(err.unwrap_err(), IndexError::DuplicateId(ZoneId::new("a")));
    }

    #[test]
    fn replacing_the_shared_index_leaves_loaded_copies_intact() {
        let shared = SharedIndex::new(ZoneIndex::build(vec![circle("old", 11.0, 57.0, 100.0)]).unwrap());
        let held = shared.load();
        shared.replace(ZoneIndex::build(vec![circle("new", 11.0, 57.0, 100.0)]).unwrap());
        assert_eq!(ids(held.containing(11.0, 57.0)), ["old"]);
        assert_eq!(ids(shared.load().containing(11.0, 57.0)), ["new"]);
    }
}
