//! Shared pieces of trygg's benchmarks: a seeded random source, generators of realistic
//! zones around Swedish towns, and ([`server`]) the `trygg serve` process the HTTP benchmarks
//! drive with CPU time from `/proc`, and ([`fleet`]) simulated 3G watches over real TCP.
//!
//! Fixtures are generated, not stored: the same seed gives the same zones and points on every
//! machine, so the repository stays small and a run can be reproduced exactly.

use geo::{Coord, Destination, Haversine, LineString, Point, Polygon};

pub mod fleet;
pub mod server;
pub use server::cpu_seconds;

/// Metres per degree of latitude (mean earth radius, as geo's haversine).
pub const M_PER_DEG: f64 = 6_371_008.8 * std::f64::consts::PI / 180.0;

/// A small, fast, seeded generator (SplitMix64). Quality is ample for fixtures, and it keeps
/// the benchmark free of a random-number dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in `[lo, hi]`.
    pub fn int(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.unit().max(f64::MIN_POSITIVE);
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * self.unit()).cos()
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// Swedish towns (lon, lat, relative weight ≈ population in thousands): zones cluster here.
pub const TOWNS: &[(f64, f64, f64)] = &[
    (18.0686, 59.3293, 980.0), // Stockholm
    (11.9746, 57.7089, 600.0), // Göteborg
    (13.0038, 55.6050, 360.0), // Malmö
    (17.6389, 59.8586, 180.0), // Uppsala
    (16.5448, 59.6099, 130.0), // Västerås
    (15.2134, 59.2753, 130.0), // Örebro
    (15.6214, 58.4108, 120.0), // Linköping
    (12.6945, 56.0465, 110.0), // Helsingborg
    (14.1618, 57.7826, 100.0), // Jönköping
    (16.1826, 58.5877, 100.0), // Norrköping
    (13.1910, 55.7047, 95.0),  // Lund
    (20.2630, 63.8258, 90.0),  // Umeå
    (17.1413, 60.6749, 75.0),  // Gävle
    (12.9401, 57.7210, 75.0),  // Borås
    (17.3063, 62.3908, 60.0),  // Sundsvall
    (13.5035, 59.3793, 65.0),  // Karlstad
    (14.8059, 56.8777, 70.0),  // Växjö
    (12.8578, 56.6745, 65.0),  // Halmstad
    (15.5869, 56.1612, 40.0),  // Karlskrona
    (16.3616, 56.6634, 40.0),  // Kalmar
    (22.1567, 65.5848, 45.0),  // Luleå
    (20.9581, 64.7507, 35.0),  // Skellefteå
    (14.6357, 63.1792, 45.0),  // Östersund
    (15.6263, 60.6065, 40.0),  // Falun
    (15.4291, 60.4858, 40.0),  // Borlänge
    (13.8370, 58.3903, 35.0),  // Skövde
    (12.2886, 58.2837, 40.0),  // Trollhättan
    (18.2981, 57.6348, 25.0),  // Visby
    (20.2253, 67.8558, 20.0),  // Kiruna
    (16.5077, 59.3716, 35.0),  // Eskilstuna
];

/// A point near a town picked by weight, spread like housing: `sigma_m` metres for a town of
/// 30,000 people, growing with the square root of the population (Stockholm: ~14 km).
pub fn town_point(rng: &mut Rng, sigma_m: f64) -> Coord {
    let total: f64 = TOWNS.iter().map(|t| t.2).sum();
    let mut pick = rng.unit() * total;
    let &(lon, lat, weight) = TOWNS
        .iter()
        .find(|t| {
            pick -= t.2;
            pick < 0.0
        })
        .unwrap_or(&TOWNS[0]);
    let sigma_m = sigma_m * (weight / 30.0).sqrt();
    offset(Coord { x: lon, y: lat }, rng.normal() * sigma_m, rng.normal() * sigma_m)
}

/// `c` moved `east_m` east and `north_m` north (flat approximation, fine below ~10 km).
pub fn offset(c: Coord, east_m: f64, north_m: f64) -> Coord {
    Coord { x: c.x + east_m / (M_PER_DEG * c.y.to_radians().cos()), y: c.y + north_m / M_PER_DEG }
}

/// A star-shaped ring of `n` vertices around `centre` with radii in `[r_min, r_max]` metres.
/// The radius varies smoothly with the angle plus a little per-vertex jitter, like an outline
/// drawn along streets and hedges; star-shaped with increasing angles means simple.
pub fn star_ring(rng: &mut Rng, centre: Coord, n: usize, r_min: f64, r_max: f64) -> LineString<f64> {
    use std::f64::consts::TAU;
    let phase = rng.unit() * TAU;
    let (k1, k2) = (rng.int(2, 5) as f64, rng.int(6, 12) as f64);
    let (p1, p2) = (rng.unit() * TAU, rng.unit() * TAU);
    let (mid, amp) = ((r_min + r_max) / 2.0, (r_max - r_min) / 2.0);
    let mut ring: Vec<Coord> = (0..n)
        .map(|i| {
            let a = phase + i as f64 / n as f64 * TAU;
            let wave = 0.55 * (k1 * a + p1).sin() + 0.3 * (k2 * a + p2).sin();
            let r = mid + amp * (wave + 0.15 * rng.range(-1.0, 1.0));
            offset(centre, r * a.cos(), r * a.sin())
        })
        .collect();
    ring.push(ring[0]);
    LineString::new(ring)
}

/// A star polygon, optionally with one star-shaped hole well inside it.
pub fn star_polygon(rng: &mut Rng, centre: Coord, n: usize, radius_m: f64, hole: bool) -> Polygon<f64> {
    let shell = star_ring(rng, centre, n, 0.6 * radius_m, radius_m);
    let holes = if hole {
        vec![star_ring(rng, centre, (n / 2).max(8), 0.1 * radius_m, 0.3 * radius_m)]
    } else {
        vec![]
    };
    Polygon::new(shell, holes)
}

/// A circle as a polygon of `n` vertices on the haversine circle, for peers that have no
/// geodesic circles (shapely, PostGIS `geometry`).
pub fn circle_polygon(centre: Coord, radius_m: f64, n: usize) -> Polygon<f64> {
    let mut ring: Vec<Coord> = (0..n)
        .map(|i| Haversine.destination(Point(centre), i as f64 * 360.0 / n as f64, radius_m).0)
        .collect();
    ring.push(ring[0]);
    Polygon::new(LineString::new(ring), vec![])
}

#[cfg(test)]
mod tests {
    use geo::Validation;

    use super::*;

    #[test]
    fn star_polygons_with_holes_are_valid() {
        let mut rng = Rng::new(1);
        for n in [16, 64, 1_500] {
            let p = star_polygon(&mut rng, Coord { x: 18.0, y: 59.3 }, n, 200.0, true);
            assert!(p.is_valid(), "{n} vertices");
        }
    }

    #[test]
    fn normal_samples_have_unit_spread() {
        let mut rng = Rng::new(2);
        let xs: Vec<f64> = (0..100_000).map(|_| rng.normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.02 && (var - 1.0).abs() < 0.02, "{mean} {var}");
    }

    #[test]
    fn cpu_seconds_reads_a_plausible_value() {
        let t = cpu_seconds();
        assert!((0.0..1e6).contains(&t));
    }
}
