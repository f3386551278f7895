//! A short, seeded run of every fuzz target on stable — the CI's smoke run.
//! Seeds (hostile inputs written by hand) first, then random mutations of
//! them. `GATEHOUSE_FUZZ_ITERATIONS` sets how many mutations per target
//! (default 5,000); real fuzzing is `cargo +nightly fuzz run <target>` (see
//! fuzz/README.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failure is a panic

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn seeds() -> Vec<Vec<u8>> {
    let format = gatehouse_domain::secret::KeyFormat::new("wc", "live").unwrap();
    let mut seeds: Vec<Vec<u8>> = [
        "",
        " ",
        "Bearer ",
        "Bearer wc_live_",
        "bearer  a.b.c",
        "Basic dXNlcjpwYXNz",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        "eyJhbGciOiJIUzI1NiIsImtpZCI6Ii4uLy4uL2V0Yy9wYXNzd2QifQ.e30.sig",
        "a.b.c.d.e",
        "wc_live_0000000000000000000000000000000000000",
        "wc_test_abc",
        "wc_rt_01234567-89ab-cdef-0123-456789abcdef",
        "claws:read",
        "claws:*",
        "*",
        "platform:admin",
        "a:b:c",
        ":",
        "GET /orders orders:read; * /admin admin:all",
        "GET /a/%2f/b x:y",
        "/orders/../admin;jsessionid=1//x/%61",
        "/%zz/..%2F..",
        r#"{"username":"a@b.c","password":"p"}"#,
        r#"{"name":"","scopes":["*"],"expires_at":"+275760-09-13T00:00:00Z"}"#,
        r#"{"grace_period_seconds":-1}"#,
        r#"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"#,
        r#"{"required_scopes":["a:b","a:b","a:b"]}"#,
        "\"1970-01-01T00:00:00Z\"",
        "\"9999-12-31T23:59:59Z\"",
        "'; DROP TABLE events; --",
        "<script>alert(1)</script>",
        "\u{0}\u{7f}\u{202e}",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    seeds.push(format.api_key_secret(&[7; 24]).into_bytes());
    seeds.push(vec![0xff, 0xfe, 0x00, 0x80]);
    seeds.push("a".repeat(70_000).into_bytes());
    seeds.push(format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes());
    seeds
}

/// A random edit of `input`: flip, insert, delete, splice or repeat bytes.
fn mutate(rng: &mut StdRng, input: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let at = if out.is_empty() {
            0
        } else {
            rng.random_range(0..out.len())
        };
        match rng.random_range(0..6) {
            0 if !out.is_empty() => out[at] ^= 1 << rng.random_range(0..8),
            1 => out.insert(at, rng.random()),
            2 if !out.is_empty() => {
                out.remove(at);
            }
            3 => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                let take = other.len().min(rng.random_range(0..64));
                out.splice(at..at, other[..take].iter().copied());
            }
            4 => {
                let interesting = [
                    b'/', b'.', b'%', b';', b':', b'*', b'"', b'{', b'}', b' ', b',',
                ];
                out.insert(at, interesting[rng.random_range(0..interesting.len())]);
            }
            _ => {
                let end = (at + rng.random_range(0..8)).min(out.len());
                let chunk = out[at..end].to_vec();
                out.splice(at..at, chunk);
            }
        }
    }
    out.truncate(100_000);
    out
}

#[test]
fn every_target_survives_its_seeds_and_seeded_mutations() {
    let iterations: usize = std::env::var("GATEHOUSE_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let seeds = seeds();
    for (name, target) in gatehouse_fuzz_targets::TARGETS {
        let mut rng = StdRng::seed_from_u64(0x6761_7465);
        for seed in &seeds {
            target(seed);
        }
        for _ in 0..iterations {
            let base = &seeds[rng.random_range(0..seeds.len())];
            let base = if base.len() > 512 { &base[..512] } else { base };
            let input = mutate(&mut rng, base, &seeds);
            let run = std::panic::catch_unwind(|| target(&input));
            assert!(
                run.is_ok(),
                "{name} panicked on {:?}",
                String::from_utf8_lossy(&input)
            );
        }
        eprintln!("{name}: {} seeds and {iterations} mutations", seeds.len());
    }
}
