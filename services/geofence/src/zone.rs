//! Zones: what a trygghetszon is, how its geometry is checked, and the point test.
//!
//! A zone is checked once, when it is created, so that evaluation never meets a geometry it
//! cannot answer for: rings are valid (closed, not self-intersecting, holes inside the shell),
//! coordinates are WGS84 `[lon, lat]` in range, a circle has a positive radius.
//!
//! **Boundary rule: a point exactly on the boundary counts as inside**, for polygons (shell and
//! hole rings alike) and circles. For a `stay_inside` zone this errs towards "no alarm" only by
//! a measure of zero width; the exit policy's margin is what absorbs real GPS error.
//!
//! Polygons are tested in plain `[lon, lat]` degrees, as shapely and PostGIS `geometry` do;
//! circles by haversine distance in metres. Polygons with many vertices get an R-tree of their
//! edges, so a point test reads only the few edges near the point instead of all of them.

use std::fmt;
use std::sync::Arc;

use geo::kernels::{Kernel, Orientation};
use geo::{
    BoundingRect, Coord, Distance, GeoNum, Haversine, Intersects, LineString, MultiPolygon, Point, Polygon,
    Rect, Validation,
};
use rstar::{AABB, RTree, RTreeObject};
use serde::{Deserialize, Serialize};
use trygg_core::DeviceId;

use crate::schedule::Schedule;

/// Mean earth radius in metres, the one [`Haversine`] uses.
const EARTH_RADIUS_M: f64 = 6_371_008.8;
/// Metres per degree of latitude (and of longitude at the equator).
const M_PER_DEG: f64 = EARTH_RADIUS_M * std::f64::consts::PI / 180.0;
/// Rings with more vertices than this get an edge index. Below it a linear scan over the
/// edges is as fast as walking a tree.
const EDGE_INDEX_MIN_VERTICES: usize = 128;

/// The identifier of a zone: the caseworker's or the database's, kept as given. Shared, not
/// copied: every device's zone state names its zones, and the engine copies states per batch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ZoneId(Arc<str>);

impl ZoneId {
    /// Wraps an identifier.
    pub fn new(id: impl Into<String>) -> Self {
        Self(Arc::from(id.into()))
    }

    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ZoneId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What crossing the zone boundary means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZoneKind {
    /// The wearer should stay inside: leaving raises an `exit` alarm.
    StayInside,
    /// The wearer should stay out: entering raises an `enter` alarm.
    KeepOut,
}

/// A zone's geometry as drawn by the caseworker. Coordinates are `x = lon, y = lat`.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// One area, possibly with holes.
    Polygon(Polygon<f64>),
    /// Several disjoint areas, e.g. a home and a day centre.
    MultiPolygon(MultiPolygon<f64>),
    /// Everything within `radius_m` metres (haversine) of `centre`.
    Circle {
        /// The centre, `x = lon, y = lat`.
        centre: Point<f64>,
        /// The radius in metres, > 0.
        radius_m: f64,
    },
}

/// Why a geometry cannot be a zone. Messages are one line and name the problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ZoneError {
    /// A coordinate is NaN, infinite or outside WGS84 `[lon, lat]` ranges.
    #[error("coordinate [{lon}, {lat}] is outside lon -180..180, lat -90..90{hint}")]
    CoordOutOfRange {
        /// The longitude given.
        lon: f64,
        /// The latitude given.
        lat: f64,
        /// A hint when swapping the two would give a valid coordinate.
        hint: &'static str,
    },
    /// A GeoJSON ring whose last position differs from its first.
    #[error("ring {ring} is not closed (its last position must repeat the first)")]
    UnclosedRing {
        /// 0 is the shell of the first polygon; rings are counted across a multipolygon.
        ring: usize,
    },
    /// The polygon is not valid: self-intersection, too few points, a hole outside the shell.
    #[error("invalid polygon: {0}")]
    InvalidPolygon(String),
    /// A circle's radius is zero, negative or not a number.
    #[error("circle radius {0} m must be a positive number")]
    BadRadius(f64),
    /// A multipolygon with no polygon in it.
    #[error("multipolygon has no polygons")]
    Empty,
    /// A GeoJSON position that is not two (or three) numbers.
    #[error("a position must be [lon, lat] or [lon, lat, altitude], found {0} numbers")]
    BadPosition(usize),
    /// A GeoJSON geometry type that cannot be a zone.
    #[error("{0} cannot be a zone; use Polygon, MultiPolygon, or Point with radius_m")]
    UnsupportedGeometry(&'static str),
    /// A GeoJSON Point without `radius_m`.
    #[error("a Point zone needs properties.radius_m (a circle)")]
    MissingRadius,
}

impl Shape {
    /// Reads a GeoJSON geometry: Polygon, MultiPolygon, or Point with `radius_m` (a circle).
    ///
    /// Unlike geo's conversion this refuses unclosed rings instead of closing them silently:
    /// a ring that does not end where it starts is usually a truncated or garbled file.
    ///
    /// ```
    /// use trygg_geofence::{Shape, ZoneError};
    /// let open: geojson::Geometry =
    ///     r#"{"type":"Polygon","coordinates":[[[11,57],[11.1,57],[11.1,57.1]]]}"#.parse()?;
    /// assert_eq!(Shape::from_geojson(&open.value, None), Err(ZoneError::UnclosedRing { ring: 0 }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_geojson(value: &geojson::Value, radius_m: Option<f64>) -> Result<Self, ZoneError> {
        use geojson::Value as V;
        let mut ring_no = 0;
        let mut polygon = |rings: &geojson::PolygonType| -> Result<Polygon<f64>, ZoneError> {
            let mut rings = rings.iter().map(|r| {
                let ring = ring_no;
                ring_no += 1;
                if r.first() != r.last() {
                    return Err(ZoneError::UnclosedRing { ring });
                }
                r.iter().map(|p| position(p)).collect::<Result<LineString<f64>, _>>()
            });
            let shell = rings.next().unwrap_or_else(|| Ok(LineString::new(vec![])))?;
            Ok(Polygon::new(shell, rings.collect::<Result<_, _>>()?))
        };
        match value {
            V::Polygon(rings) => Ok(Self::Polygon(polygon(rings)?)),
            V::MultiPolygon(polys) => {
                Ok(Self::MultiPolygon(polys.iter().map(polygon).collect::<Result<_, _>>()?))
            }
            V::Point(p) => match radius_m {
                Some(radius_m) => Ok(Self::Circle { centre: position(p)?.into(), radius_m }),
                None => Err(ZoneError::MissingRadius),
            },
            V::MultiPoint(_) => Err(ZoneError::UnsupportedGeometry("MultiPoint")),
            V::LineString(_) => Err(ZoneError::UnsupportedGeometry("LineString")),
            V::MultiLineString(_) => Err(ZoneError::UnsupportedGeometry("MultiLineString")),
            V::GeometryCollection(_) => Err(ZoneError::UnsupportedGeometry("GeometryCollection")),
        }
    }
}

fn position(p: &[f64]) -> Result<Coord, ZoneError> {
    match p {
        [lon, lat] | [lon, lat, _] => Ok(Coord { x: *lon, y: *lat }),
        _ => Err(ZoneError::BadPosition(p.len())),
    }
}

/// A validated zone, ready to be indexed.
///
/// ```
/// use geo::polygon;
/// use trygg_geofence::{Shape, Zone, ZoneId, ZoneKind};
/// let garden = polygon![(x: 11.0, y: 57.0), (x: 11.001, y: 57.0), (x: 11.001, y: 57.001), (x: 11.0, y: 57.001)];
/// let zone = Zone::new(ZoneId::new("garden"), ZoneKind::StayInside, Shape::Polygon(garden))?;
/// assert!(zone.contains(11.0005, 57.0005));
/// assert!(zone.contains(11.0, 57.0005)); // on the boundary: inside
/// assert!(!zone.contains(11.002, 57.0005));
/// # Ok::<(), trygg_geofence::ZoneError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Zone {
    id: ZoneId,
    kind: ZoneKind,
    devices: Vec<DeviceId>,
    schedule: Option<Schedule>,
    geometry: Geometry,
}

#[derive(Debug, Clone)]
enum Geometry {
    Circle { centre: Coord, radius_m: f64 },
    Parts(Vec<Part>),
}

/// One polygon of a zone, with its bounding box, a grid that answers at once for most of the
/// box, and, when large, an R-tree of its edges for the rest.
#[derive(Debug, Clone)]
struct Part {
    polygon: Polygon<f64>,
    bbox: Rect<f64>,
    grid: CellGrid,
    edges: Option<RTree<Edge>>,
}

/// A grid over a polygon's bounding box. A cell no edge passes through lies wholly inside or
/// wholly outside, so a point there is decided by one byte instead of a walk over the edges.
///
/// The box is not kept here: the part and the zone index each have it already, and the index
/// keeps a clone of the grid (the cells are shared) beside each part's box, so most candidates
/// are decided without touching the zone at all (at 100k zones every pointer followed is a
/// likely cache miss, and those misses were the slow lookups).
#[derive(Debug, Clone)]
pub(crate) struct CellGrid {
    side: usize,
    cells: Arc<[Cell]>,
}

/// Where a grid's cells lie: its box's lower corner and one cell's size.
struct Placement {
    min: Coord,
    step: Coord,
    side: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cell {
    Inside,
    Outside,
    /// An edge passes through this cell or a neighbour: ask the edges.
    Near,
}

/// One edge of a ring, as stored in a large polygon's edge index.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Edge {
    start: Coord,
    end: Coord,
}

impl RTreeObject for Edge {
    type Envelope = AABB<[f64; 2]>;

    fn envelope(&self) -> Self::Envelope {
        AABB::from_corners([self.start.x, self.start.y], [self.end.x, self.end.y])
    }
}

impl Zone {
    /// Checks a geometry and makes it a zone that applies to no device yet.
    pub fn new(id: ZoneId, kind: ZoneKind, shape: Shape) -> Result<Self, ZoneError> {
        let geometry = match shape {
            Shape::Circle { centre, radius_m } => {
                check_coord(centre.0)?;
                if !(radius_m.is_finite() && radius_m > 0.0) {
                    return Err(ZoneError::BadRadius(radius_m));
                }
                Geometry::Circle { centre: centre.0, radius_m }
            }
            Shape::Polygon(p) => Geometry::Parts(vec![Part::new(p)?]),
            Shape::MultiPolygon(mp) => {
                if mp.0.is_empty() {
                    return Err(ZoneError::Empty);
                }
                mp.check_validation().map_err(|e| ZoneError::InvalidPolygon(e.to_string()))?;
                Geometry::Parts(mp.0.into_iter().map(Part::new).collect::<Result<_, _>>()?)
            }
        };
        Ok(Self { id, kind, devices: Vec::new(), schedule: None, geometry })
    }

    /// Makes the zone apply to these devices (a care home's garden applies to many).
    pub fn for_devices(mut self, devices: impl IntoIterator<Item = DeviceId>) -> Self {
        self.devices = devices.into_iter().collect();
        self.devices.sort();
        self.devices.dedup();
        self
    }

    /// Limits the zone to weekly time windows; without a schedule it is always active.
    pub fn with_schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = Some(schedule);
        self
    }

    /// The zone's identifier.
    pub fn id(&self) -> &ZoneId {
        &self.id
    }

    /// Whether leaving or entering raises the alarm.
    pub fn kind(&self) -> ZoneKind {
        self.kind
    }

    /// The devices the zone applies to, sorted.
    pub fn devices(&self) -> &[DeviceId] {
        &self.devices
    }

    /// The weekly schedule, if the zone is not always active.
    pub fn schedule(&self) -> Option<&Schedule> {
        self.schedule.as_ref()
    }

    /// Whether the point `(lon, lat)` is in the zone; the boundary counts as inside.
    pub fn contains(&self, lon: f64, lat: f64) -> bool {
        let c = Coord { x: lon, y: lat };
        match &self.geometry {
            Geometry::Circle { centre, radius_m } => haversine_m(*centre, c) <= *radius_m,
            Geometry::Parts(parts) => parts.iter().any(|p| p.contains(c)),
        }
    }

    /// Distance in metres from `(lon, lat)` to the nearest point of the zone's boundary,
    /// or `cap_m` if the boundary is further away than that (which keeps the search local).
    ///
    /// Polygon distances use a local flat projection around the point: at the scale of a
    /// margin (tens to hundreds of metres) it differs from haversine by far less than GPS error.
    pub fn boundary_distance_m(&self, lon: f64, lat: f64, cap_m: f64) -> f64 {
        let c = Coord { x: lon, y: lat };
        match &self.geometry {
            Geometry::Circle { centre, radius_m } => (haversine_m(*centre, c) - radius_m).abs().min(cap_m),
            Geometry::Parts(parts) => {
                let frame = LocalFrame::at(c);
                parts.iter().fold(cap_m, |best, p| p.boundary_distance_m(&frame, best))
            }
        }
    }

    /// The bounding boxes of the zone's parts, `[min, max]` as `[lon, lat]`, one per part.
    pub(crate) fn envelopes(&self) -> Vec<AABB<[f64; 2]>> {
        match &self.geometry {
            Geometry::Circle { centre, radius_m } => {
                let frame = LocalFrame::at(*centre);
                let (dx, dy) = (radius_m / frame.m_per_deg_x, radius_m / M_PER_DEG);
                vec![AABB::from_corners([centre.x - dx, centre.y - dy], [centre.x + dx, centre.y + dy])]
            }
            Geometry::Parts(parts) => {
                parts.iter().map(|p| AABB::from_corners(p.bbox.min().into(), p.bbox.max().into())).collect()
            }
        }
    }

    /// Each part's grid (as numbered by [`Zone::envelopes`]); a circle has none.
    pub(crate) fn grids(&self) -> Vec<Option<CellGrid>> {
        match &self.geometry {
            Geometry::Circle { .. } => vec![None],
            Geometry::Parts(parts) => parts.iter().map(|p| Some(p.grid.clone())).collect(),
        }
    }

    /// Whether the point is in part `part` (as numbered by [`Zone::envelopes`]).
    pub(crate) fn part_contains(&self, part: usize, lon: f64, lat: f64) -> bool {
        match &self.geometry {
            Geometry::Circle { .. } => self.contains(lon, lat),
            Geometry::Parts(parts) => parts[part].contains(Coord { x: lon, y: lat }),
        }
    }
}

impl Part {
    fn new(polygon: Polygon<f64>) -> Result<Self, ZoneError> {
        for c in polygon.exterior().0.iter().chain(polygon.interiors().iter().flat_map(|r| &r.0)) {
            check_coord(*c)?;
        }
        polygon.check_validation().map_err(|e| ZoneError::InvalidPolygon(e.to_string()))?;
        let bbox = polygon.bounding_rect().ok_or(ZoneError::Empty)?;
        let vertices =
            polygon.exterior().0.len() + polygon.interiors().iter().map(|r| r.0.len()).sum::<usize>();
        let edges: Vec<Edge> =
            rings(&polygon).flat_map(|r| r.lines()).map(|l| Edge { start: l.start, end: l.end }).collect();
        let grid = CellGrid::new(bbox, &edges);
        let edges = (vertices > EDGE_INDEX_MIN_VERTICES).then(|| RTree::bulk_load(edges));
        Ok(Self { polygon, bbox, grid, edges })
    }

    fn contains(&self, c: Coord) -> bool {
        if !self.bbox.intersects(&c) {
            return false;
        }
        match self.grid.cell(self.bbox.min(), self.bbox.max(), c) {
            Cell::Inside => return true,
            Cell::Outside => return false,
            Cell::Near => {}
        }
        match &self.edges {
            None => self.polygon.intersects(&c),
            Some(tree) => {
                // Only edges whose box meets a ray from `c` out of the bounding box can cross it
                // or hold `c`. The shortest of the four rays meets the fewest: it is cast as the
                // ray to the right in a frame mirrored or turned so that it points right (exact
                // in floating point, so the answer is the same), and the crossing rules are
                // geo's, so both paths agree exactly.
                let (lo, hi) = (self.bbox.min(), self.bbox.max());
                let (frame, ray): (fn(Coord) -> Coord, _) = [
                    (hi.x - c.x, (|p: Coord| p) as fn(Coord) -> Coord, [hi.x, c.y]),
                    (c.x - lo.x, |p: Coord| Coord { x: -p.x, y: p.y }, [lo.x, c.y]),
                    (hi.y - c.y, |p: Coord| Coord { x: p.y, y: p.x }, [c.x, hi.y]),
                    (c.y - lo.y, |p: Coord| Coord { x: -p.y, y: p.x }, [c.x, lo.y]),
                ]
                .into_iter()
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, frame, end)| (frame, AABB::from_corners([c.x, c.y], end)))
                .expect("four rays");
                let at = frame(c);
                let mut crossings = 0u32;
                for e in tree.locate_in_envelope_intersecting(&ray) {
                    match crossing(frame(e.start), frame(e.end), at) {
                        Crossing::OnBoundary => return true,
                        Crossing::Crosses => crossings += 1,
                        Crossing::Misses => {}
                    }
                }
                // Rings of a valid polygon are simple and nested one level, so the parity of
                // all crossings says inside the shell and outside every hole.
                crossings % 2 == 1
            }
        }
    }

    fn boundary_distance_m(&self, frame: &LocalFrame, cap_m: f64) -> f64 {
        if frame.distance_to_rect_m(&self.bbox) > cap_m {
            return cap_m;
        }
        match &self.edges {
            None => rings(&self.polygon)
                .flat_map(|r| r.lines())
                .fold(cap_m, |best, l| best.min(frame.segment_distance_m(l.start, l.end))),
            Some(tree) => {
                let (dx, dy) = (cap_m / frame.m_per_deg_x, cap_m / M_PER_DEG);
                let o = frame.origin;
                let near = AABB::from_corners([o.x - dx, o.y - dy], [o.x + dx, o.y + dy]);
                tree.locate_in_envelope_intersecting(&near)
                    .fold(cap_m, |best, e| best.min(frame.segment_distance_m(e.start, e.end)))
            }
        }
    }
}

impl CellGrid {
    /// Side of the grid: about twice the square root of the edge count (a polygon of 40
    /// edges gets 13 × 13 cells), at least 4 and at most 128.
    fn new(bbox: Rect<f64>, edges: &[Edge]) -> Self {
        let side = ((edges.len() as f64).sqrt() * 2.0).ceil().clamp(4.0, 128.0) as usize;
        let grid = Placement::of(bbox.min(), bbox.max(), side);
        let cell = grid.step;
        let mut cells = vec![Cell::Outside; side * side];
        // Mark every cell an edge's box touches, widened by far more than rounding error: a
        // point that rounding puts into the cell next to its true one is within that margin of
        // the shared border, so any edge between it and the cell's centre marks the cell.
        const EPS_DEG: f64 = 1e-9;
        for e in edges {
            let lo = Coord { x: e.start.x.min(e.end.x) - EPS_DEG, y: e.start.y.min(e.end.y) - EPS_DEG };
            let hi = Coord { x: e.start.x.max(e.end.x) + EPS_DEG, y: e.start.y.max(e.end.y) + EPS_DEG };
            let ((x0, y0), (x1, y1)) = (grid.index(lo), grid.index(hi));
            for y in y0..=y1 {
                for x in x0..=x1 {
                    cells[y * side + x] = Cell::Near;
                }
            }
        }
        // Every other cell is wholly on one side: decide it by its centre, one scan line per
        // row (the centre is half a cell from any edge, so rounding cannot matter).
        for row in 0..side {
            let y = grid.min.y + (row as f64 + 0.5) * cell.y;
            let mut xs: Vec<f64> = edges
                .iter()
                .filter(|e| (e.start.y > y) != (e.end.y > y))
                .map(|e| e.start.x + (y - e.start.y) * (e.end.x - e.start.x) / (e.end.y - e.start.y))
                .collect();
            xs.sort_unstable_by(f64::total_cmp);
            for col in 0..side {
                let i = row * side + col;
                if cells[i] == Cell::Outside {
                    let x = grid.min.x + (col as f64 + 0.5) * cell.x;
                    let right = xs.len() - xs.partition_point(|&v| v <= x);
                    cells[i] = if right % 2 == 1 { Cell::Inside } else { Cell::Outside };
                }
            }
        }
        Self { side, cells: cells.into() }
    }

    /// The cell of `c` in this grid over the box from `min` to `max` (the box it was built on).
    pub(crate) fn cell(&self, min: Coord, max: Coord, c: Coord) -> Cell {
        let (x, y) = Placement::of(min, max, self.side).index(c);
        self.cells[y * self.side + x]
    }
}

impl Placement {
    fn of(min: Coord, max: Coord, side: usize) -> Self {
        Self { min, step: Coord { x: (max.x - min.x) / side as f64, y: (max.y - min.y) / side as f64 }, side }
    }

    fn index(&self, c: Coord) -> (usize, usize) {
        let at =
            |v: f64, min: f64, step: f64| (((v - min) / step).floor().max(0.0) as usize).min(self.side - 1);
        (at(c.x, self.min.x, self.step.x), at(c.y, self.min.y, self.step.y))
    }
}

fn rings(p: &Polygon<f64>) -> impl Iterator<Item = &LineString<f64>> {
    std::iter::once(p.exterior()).chain(p.interiors())
}

enum Crossing {
    Misses,
    Crosses,
    OnBoundary,
}

/// How edge `a → b` relates to the ray from `c` towards +x, by the rules geo's winding number
/// uses (`coord_pos_relative_to_ring`): an upward edge includes its start and excludes its end,
/// a downward edge the reverse, horizontal edges never cross, and a collinear point between
/// the ends is on the boundary. Orientation comes from geo's robust kernel.
fn crossing(a: Coord, b: Coord, c: Coord) -> Crossing {
    let on_segment = |o: Orientation| o == Orientation::Collinear && between(c.x, a.x, b.x);
    if a.y <= c.y {
        if b.y >= c.y {
            let o = <f64 as GeoNum>::Ker::orient2d(a, b, c);
            if o == Orientation::CounterClockwise && b.y != c.y {
                return Crossing::Crosses;
            } else if on_segment(o) {
                return Crossing::OnBoundary;
            }
        }
    } else if b.y <= c.y {
        let o = <f64 as GeoNum>::Ker::orient2d(a, b, c);
        if o == Orientation::Clockwise {
            return Crossing::Crosses;
        } else if on_segment(o) {
            return Crossing::OnBoundary;
        }
    }
    Crossing::Misses
}

fn between(v: f64, a: f64, b: f64) -> bool {
    a.min(b) <= v && v <= a.max(b)
}

fn check_coord(c: Coord) -> Result<(), ZoneError> {
    let valid = |lon: f64, lat: f64| (-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat);
    if valid(c.x, c.y) {
        return Ok(());
    }
    let hint = if valid(c.y, c.x) { "; are lon and lat swapped? GeoJSON wants [lon, lat]" } else { "" };
    Err(ZoneError::CoordOutOfRange { lon: c.x, lat: c.y, hint })
}

pub(crate) fn haversine_m(a: Coord, b: Coord) -> f64 {
    Haversine.distance(Point(a), Point(b))
}

/// A flat projection in metres around one point: exact enough within a few kilometres,
/// and far cheaper than spherical trigonometry per edge.
struct LocalFrame {
    origin: Coord,
    m_per_deg_x: f64,
}

impl LocalFrame {
    fn at(origin: Coord) -> Self {
        // Clamp so the frame stays finite at the poles; no zone is drawn there.
        let m_per_deg_x = (M_PER_DEG * origin.y.to_radians().cos()).max(1.0);
        Self { origin, m_per_deg_x }
    }

    fn project(&self, c: Coord) -> (f64, f64) {
        ((c.x - self.origin.x) * self.m_per_deg_x, (c.y - self.origin.y) * M_PER_DEG)
    }

    fn segment_distance_m(&self, a: Coord, b: Coord) -> f64 {
        let ((ax, ay), (bx, by)) = (self.project(a), self.project(b));
        let (dx, dy) = (bx - ax, by - ay);
        let len2 = dx * dx + dy * dy;
        let t = if len2 > 0.0 { (-(ax * dx + ay * dy) / len2).clamp(0.0, 1.0) } else { 0.0 };
        (ax + t * dx).hypot(ay + t * dy)
    }

    fn distance_to_rect_m(&self, r: &Rect<f64>) -> f64 {
        let (x0, y0) = self.project(r.min());
        let (x1, y1) = self.project(r.max());
        // The origin is the point itself: the gap on each axis is how far the rect lies past it.
        x0.max(-x1).max(0.0).hypot(y0.max(-y1).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use geo::{CoordsIter, polygon};

    use super::*;

    fn square(x0: f64, y0: f64, side: f64) -> Polygon<f64> {
        polygon![(x: x0, y: y0), (x: x0 + side, y: y0), (x: x0 + side, y: y0 + side), (x: x0, y: y0 + side)]
    }

    fn zone(shape: Shape) -> Zone {
        Zone::new(ZoneId::new("z"), ZoneKind::StayInside, shape).unwrap()
    }

    /// A star-shaped polygon with `n` vertices around (lon, lat): simple by construction.
    fn star(lon: f64, lat: f64, n: usize, seed: u64) -> Polygon<f64> {
        let mut s = seed;
        let ring: Vec<Coord> = (0..n)
            .map(|i| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let r = 0.005 + 0.005 * ((s >> 33) as f64 / (1u64 << 31) as f64);
                let a = i as f64 / n as f64 * std::f64::consts::TAU;
                Coord { x: lon + r * a.cos(), y: lat + r * a.sin() }
            })
            .collect();
        Polygon::new(LineString::from(ring), vec![])
    }

    #[test]
    fn point_inside_a_polygon_is_in_the_zone_and_outside_is_not() {
        let z = zone(Shape::Polygon(square(11.0, 57.0, 0.01)));
        assert!(z.contains(11.005, 57.005));
        assert!(!z.contains(11.02, 57.005));
        assert!(!z.contains(11.005, 56.99));
    }

    #[test]
    fn point_on_boundary_counts_as_inside() {
        let z = zone(Shape::Polygon(square(11.0, 57.0, 0.01)));
        assert!(z.contains(11.0, 57.005), "on an edge");
        assert!(z.contains(11.0, 57.0), "on a vertex");
        let c = zone(Shape::Circle { centre: Point::new(11.0, 57.0), radius_m: 100.0 });
        let on_circle = Coord { x: 11.0, y: 57.0 + 100.0 / M_PER_DEG };
        let d = haversine_m(Coord { x: 11.0, y: 57.0 }, on_circle);
        let radius_m = d; // a circle whose boundary passes exactly through the point
        let exact = zone(Shape::Circle { centre: Point::new(11.0, 57.0), radius_m });
        assert!(exact.contains(on_circle.x, on_circle.y));
        assert!(c.contains(11.0, 57.0));
    }

    #[test]
    fn point_in_a_hole_is_outside_and_on_the_hole_edge_is_inside() {
        let hole = square(11.004, 57.004, 0.002).exterior().clone();
        let z = zone(Shape::Polygon(Polygon::new(square(11.0, 57.0, 0.01).exterior().clone(), vec![hole])));
        assert!(!z.contains(11.005, 57.005), "in the hole");
        assert!(z.contains(11.004, 57.005), "on the hole's edge");
        assert!(z.contains(11.002, 57.002), "in the ring between shell and hole");
    }

    #[test]
    fn multipolygon_contains_points_of_each_part_and_none_between() {
        let mp = MultiPolygon::new(vec![square(11.0, 57.0, 0.01), square(11.1, 57.0, 0.01)]);
        let z = zone(Shape::MultiPolygon(mp));
        assert!(z.contains(11.005, 57.005));
        assert!(z.contains(11.105, 57.005));
        assert!(!z.contains(11.05, 57.005));
        assert_eq!(z.envelopes().len(), 2);
    }

    #[test]
    fn circle_contains_points_within_its_haversine_radius() {
        let z = zone(Shape::Circle { centre: Point::new(18.07, 59.33), radius_m: 200.0 });
        // 1 degree of latitude is ~111.2 km, so 190 m north is inside and 210 m is not.
        assert!(z.contains(18.07, 59.33 + 190.0 / M_PER_DEG));
        assert!(!z.contains(18.07, 59.33 + 210.0 / M_PER_DEG));
        // East-west degrees are shorter at 59° N: 0.0035° of longitude is ~199 m.
        assert!(z.contains(18.07 + 0.0035, 59.33));
        assert!(!z.contains(18.07 + 0.0037, 59.33));
    }

    #[test]
    fn large_polygon_with_an_edge_index_agrees_with_geo_everywhere() {
        // A spiky outline (most grid cells near an edge) and a smooth one (most cells decided
        // by the grid alone), both with a hole.
        let smooth: Vec<Coord> = (0..2_000)
            .map(|i| {
                let a = i as f64 / 2_000.0 * std::f64::consts::TAU;
                let r = 0.008 + 0.0015 * (3.0 * a).sin();
                Coord { x: 11.0 + r * a.cos(), y: 57.0 + r * a.sin() }
            })
            .collect();
        for mut p in [star(11.0, 57.0, 2_000, 7), Polygon::new(LineString::from(smooth), vec![])] {
            p.interiors_push(square(10.999, 56.999, 0.002).exterior().clone());
            let z = zone(Shape::Polygon(p.clone()));
            let Geometry::Parts(parts) = &z.geometry else { unreachable!() };
            assert!(parts[0].edges.is_some(), "a 2,000-vertex polygon is edge-indexed");
            let decided = parts[0].grid.cells.iter().filter(|c| **c != Cell::Near).count();
            assert!(decided > 0, "some cells are decided by the grid alone");
            let mut s = 1u64;
            let mut probes: Vec<Coord> = p.coords_iter().collect(); // every vertex
            probes.extend(p.exterior().lines().map(|l| (l.start + l.end) / 2.0)); // edge midpoints
            for _ in 0..5_000 {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                let fx = (s >> 11) as f64 / (1u64 << 53) as f64;
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                let fy = (s >> 11) as f64 / (1u64 << 53) as f64;
                probes.push(Coord { x: 10.988 + 0.024 * fx, y: 56.988 + 0.024 * fy });
            }
            // Points sharing the y (or the x) of a vertex exercise the half-open crossing rules
            // of a ray cast left or right (up or down), whichever leaves the box soonest.
            for c in &p.exterior().0 {
                probes.extend([-0.001, 0.001].map(|d| Coord { x: c.x + d, y: c.y }));
                probes.extend([-0.001, 0.001].map(|d| Coord { x: c.x, y: c.y + d }));
            }
            for c in probes {
                assert_eq!(z.contains(c.x, c.y), p.intersects(&c), "at {c:?}");
            }
        }
    }

    #[test]
    fn small_polygon_decided_by_its_grid_agrees_with_geo_everywhere() {
        let mut p = star(11.0, 57.0, 40, 11);
        p.interiors_push(square(10.999, 56.999, 0.002).exterior().clone());
        let z = zone(Shape::Polygon(p.clone()));
        let Geometry::Parts(parts) = &z.geometry else { unreachable!() };
        assert!(parts[0].edges.is_none());
        let mut probes: Vec<Coord> = p.coords_iter().collect();
        probes.extend(rings(&p).flat_map(|r| r.lines()).map(|l| (l.start + l.end) / 2.0));
        let n = 150;
        for i in 0..=n {
            for j in 0..=n {
                let (fx, fy) = (i as f64 / n as f64, j as f64 / n as f64);
                probes.push(Coord { x: 10.988 + 0.024 * fx, y: 56.988 + 0.024 * fy });
            }
        }
        for c in probes {
            assert_eq!(z.contains(c.x, c.y), p.intersects(&c), "at {c:?}");
        }
    }

    #[test]
    fn boundary_distance_is_metres_to_the_nearest_edge_capped() {
        let z = zone(Shape::Polygon(square(11.0, 57.0, 0.01)));
        let d = z.boundary_distance_m(11.0 - 50.0 / (M_PER_DEG * 57f64.to_radians().cos()), 57.005, 1e6);
        assert!((d - 50.0).abs() < 0.1, "{d}");
        assert_eq!(z.boundary_distance_m(12.0, 57.005, 300.0), 300.0);
        let big = zone(Shape::Polygon(star(11.0, 57.0, 1_000, 3)));
        let Geometry::Parts(parts) = &big.geometry else { unreachable!() };
        for (lon, lat) in [(11.0, 57.0), (11.008, 57.0), (11.0, 57.0099)] {
            // The indexed search finds the same nearest edge as a scan of every edge.
            let frame = LocalFrame::at(Coord { x: lon, y: lat });
            let full = rings(&parts[0].polygon)
                .flat_map(|r| r.lines())
                .fold(5_000.0, |b: f64, l| b.min(frame.segment_distance_m(l.start, l.end)));
            assert!((big.boundary_distance_m(lon, lat, 5_000.0) - full).abs() < 1e-9);
        }
        let c = zone(Shape::Circle { centre: Point::new(11.0, 57.0), radius_m: 100.0 });
        assert!((c.boundary_distance_m(11.0, 57.0, 1e6) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn self_intersecting_polygon_is_refused() {
        let bowtie =
            polygon![(x: 11.0, y: 57.0), (x: 11.01, y: 57.01), (x: 11.01, y: 57.0), (x: 11.0, y: 57.01)];
        let err = Zone::new(ZoneId::new("z"), ZoneKind::StayInside, Shape::Polygon(bowtie)).unwrap_err();
        assert!(matches!(err, ZoneError::InvalidPolygon(ref m) if m.contains("self-intersection")), "{err}");
    }

    #[test]
    fn circle_with_radius_zero_or_less_is_refused() {
        for r in [0.0, -5.0, f64::NAN] {
            let shape = Shape::Circle { centre: Point::new(11.0, 57.0), radius_m: r };
            assert!(matches!(
                Zone::new(ZoneId::new("z"), ZoneKind::KeepOut, shape),
                Err(ZoneError::BadRadius(_))
            ));
        }
    }

    #[test]
    fn swapped_coordinates_out_of_range_are_refused_with_a_hint() {
        let shape = Shape::Circle { centre: Point::new(-33.9, 151.2), radius_m: 10.0 };
        let err = Zone::new(ZoneId::new("z"), ZoneKind::StayInside, shape).unwrap_err();
        assert!(err.to_string().contains("swapped"), "{err}");
    }
}
