//! The trait contracts of `Iter`, `Keys`, `Values` and `Diff` (`len` at every
//! step, fused, `nth` past the end, `clone` and `Debug` mid-way, searches
//! stopped part-way then continued, every overridden method against plain
//! `next()` calls), checked against plain references (a one-by-one `next()`
//! walk, and `std::collections::HashMap` models), with and without
//! `instrument`, over sizes around node boundaries, collisions and hashers
//! that fill one part of the trie.
//!
//! Every check records its failure instead of panicking at once, so that one
//! run reports every contract broken (first few of each kind).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::hash::{BuildHasher, Hasher};
use std::iter::FusedIterator;
use std::ops::ControlFlow;

use snapview::{Change, SnapMap, Snapshot, View};

// ---------------------------------------------------------------- hashers

/// Reads the `u64` a key's `Hash` writes (u64 keys only).
#[derive(Default)]
struct Capture(u64);

impl Capture {
    fn write_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
}

macro_rules! hasher {
    ($state:ident, $hasher:ident, |$x:ident| $finish:expr) => {
        #[derive(Clone, Copy, Default, Debug)]
        struct $state;
        #[derive(Default)]
        struct $hasher(Capture);
        impl Hasher for $hasher {
            fn finish(&self) -> u64 {
                let $x = (self.0).0;
                $finish
            }
            fn write(&mut self, bytes: &[u8]) {
                self.0.write_bytes(bytes);
            }
            fn write_u64(&mut self, n: u64) {
                (self.0).0 = n;
            }
        }
        impl BuildHasher for $state {
            type Hasher = $hasher;
            fn build_hasher(&self) -> $hasher {
                $hasher::default()
            }
        }
    };
}

hasher!(ConstState, ConstHasher, |x| {
    let _ = x;
    0x5A5A_1234_DEAD_BEEF
});
hasher!(IdState, IdHasher, |x| x);
hasher!(HighState, HighHasher, |x| x << 40);

// ---------------------------------------------------------------- failures

#[derive(Default)]
struct Fails {
    by_kind: BTreeMap<String, (usize, Vec<String>)>,
}

impl Fails {
    fn add(&mut self, kind: &str, msg: String) {
        let e = self.by_kind.entry(kind.to_string()).or_default();
        e.0 += 1;
        if e.1.len() < 4 {
            e.1.push(msg);
        }
    }
    fn check(&mut self, ok: bool, kind: &str, msg: impl FnOnce() -> String) {
        if !ok {
            self.add(kind, msg());
        }
    }
    fn finish(self, test: &str) {
        if self.by_kind.is_empty() {
            return;
        }
        let mut out = format!("{test}: contract violations:\n");
        for (kind, (count, msgs)) in &self.by_kind {
            out += &format!("  [{kind}] x{count}\n");
            for m in msgs {
                out += &format!("      {m}\n");
            }
        }
        panic!("{out}");
    }
}

// ---------------------------------------------------------------- exact-size iterators

/// `next()` one by one. Capped: an iterator that yields more than this is
/// broken anyway (the test's maps hold at most `BIG` entries).
const WALK_CAP: usize = 300_000;

fn walk<I: Iterator>(it: I) -> Vec<I::Item> {
    let mut out = Vec::new();
    for x in it {
        out.push(x);
        if out.len() >= WALK_CAP {
            break;
        }
    }
    out
}

fn positions(n: usize) -> Vec<usize> {
    let mut p: Vec<usize> = if n <= 130 {
        (0..=n + 1).collect()
    } else {
        let mut v =
            vec![0, 1, 2, 3, 31, 32, 33, 63, 64, 65, 127, 128, n / 3, n / 2, n - 65, n - 64, n - 2, n - 1, n, n + 1];
        if n <= 1000 {
            v.extend((0..n).step_by(97));
        }
        v
    };
    p.sort_unstable();
    p.dedup();
    p
}

/// Checks every contract of an exact-size, fused, clonable iterator made by
/// `make` against the items its own `next()` yields one by one.
fn check_exact<I, T>(fails: &mut Fails, label: &str, make: impl Fn() -> I) -> Vec<T>
where
    I: Iterator<Item = T> + ExactSizeIterator + FusedIterator + Clone + Debug,
    T: PartialEq + Debug + Copy,
{
    let verbose = std::env::var_os("AUDIT_VERBOSE").is_some();
    if verbose {
        eprintln!("check_exact {label}");
    }
    // The reference: next() one by one, len() checked at every step.
    let reference: Vec<T> = {
        let mut it = make();
        let n0 = it.len();
        let mut out = Vec::new();
        loop {
            let left = n0.checked_sub(out.len());
            let sh = it.size_hint();
            fails.check(Some(sh.0) == left && sh.1 == left, "size_hint at step", || {
                format!("{label}: step {}: size_hint {sh:?}, want {left:?}", out.len())
            });
            match it.next() {
                Some(x) => out.push(x),
                None => break,
            }
            if out.len() > n0 + 10 {
                fails.add("yields past len", format!("{label}: more than len()+10 = {} items, stopped", n0 + 10));
                break;
            }
        }
        for extra in 0..5 {
            let got = it.next();
            fails.check(got.is_none(), "fused", || format!("{label}: next() #{extra} after end gave {got:?}"));
            fails.check(it.len() == 0, "len after end", || format!("{label}: len {} after end", it.len()));
        }
        fails.check(out.len() == n0, "len at start", || format!("{label}: len() {n0}, yielded {}", out.len()));
        out
    };
    let n = reference.len();

    // Whole-iterator consumers.
    {
        let folded = make().fold(Vec::new(), |mut v, x| {
            v.push(x);
            v
        });
        fails.check(folded == reference, "fold", || format!("{label}: fold differs from next() (n={n})"));
        let mut fe = Vec::new();
        make().for_each(|x| fe.push(x));
        fails.check(fe == reference, "for_each", || format!("{label}: for_each differs (n={n})"));
        let collected: Vec<T> = make().collect();
        fails.check(collected == reference, "collect", || format!("{label}: collect differs (n={n})"));
        let c = make().count();
        fails.check(c == n, "count", || format!("{label}: count {c}, want {n}"));
        let l = make().last();
        fails.check(l == reference.last().copied(), "last", || {
            format!("{label}: last {l:?}, want {:?}", reference.last())
        });
        let mut for_loop = Vec::new();
        for x in make() {
            for_loop.push(x);
        }
        fails.check(for_loop == reference, "for loop", || format!("{label}: for loop differs"));
        // Debug of a fresh iterator.
        let it = make();
        let d = format!("{it:?}");
        let want = format!("{reference:?}");
        fails.check(d == want, "debug", || format!("{label}: Debug of fresh iterator differs (n={n})"));
        fails.check(it.len() == n, "debug consumes", || format!("{label}: Debug changed len to {}", it.len()));
        let after = walk(it);
        fails.check(after == reference, "debug consumes", || format!("{label}: Debug altered the iteration"));
    }

    let big = n > 20_000;
    for p in positions(n) {
        if verbose {
            let rss = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
            eprintln!("  {label} @{p} statm {rss}");
        }
        let rest: &[T] = reference.get(p..).unwrap_or(&[]);
        let left = rest.len();
        // Advance p by next().
        let mut it = make();
        for _ in 0..p {
            it.next();
        }
        fails.check(it.len() == left, "len after next", || {
            format!("{label}: after {p} next(): len {}, want {left}", it.len())
        });

        // Clone yields the same rest, and the original is unaffected.
        let c = it.clone();
        fails.check(c.len() == left, "clone len", || format!("{label}@{p}: clone len {}", c.len()));
        let cr = walk(c);
        fails.check(cr == rest, "clone rest", || format!("{label}@{p}: clone's rest differs ({} vs {left})", cr.len()));
        fails.check(it.len() == left, "clone alters", || format!("{label}@{p}: clone altered len"));

        // Debug does not consume.
        if !big || p % 2 == 0 {
            let d = format!("{it:?}");
            fails.check(d == format!("{rest:?}"), "debug partial", || format!("{label}@{p}: Debug differs from rest"));
            fails.check(it.len() == left, "debug consumes", || {
                format!("{label}@{p}: Debug changed len to {}", it.len())
            });
        }

        // Internal iteration of the rest.
        let f = it.clone().fold(Vec::new(), |mut v, x| {
            v.push(x);
            v
        });
        fails.check(f == rest, "fold partial", || format!("{label}@{p}: fold of rest differs ({} vs {left})", f.len()));
        let c = it.clone().count();
        fails.check(c == left, "count partial", || format!("{label}@{p}: count {c}, want {left}"));
        let l = it.clone().last();
        fails.check(l == rest.last().copied(), "last partial", || {
            format!("{label}@{p}: last {l:?}, want {:?}", rest.last())
        });

        // nth, including past the end.
        let ks: Vec<usize> = if big {
            vec![0, 1, 64, left.saturating_sub(1), left, left + 1, usize::MAX]
        } else {
            vec![
                0,
                1,
                2,
                3,
                62,
                63,
                64,
                65,
                left.saturating_sub(2),
                left.saturating_sub(1),
                left,
                left + 1,
                left + 100,
                usize::MAX,
            ]
        };
        for k in ks {
            let mut c = it.clone();
            let got = c.nth(k);
            let want = rest.get(k).copied();
            fails.check(got == want, "nth", || format!("{label}@{p}: nth({k}) = {got:?}, want {want:?}"));
            let want_left = left.saturating_sub(k.saturating_add(1));
            fails.check(c.len() == want_left, "len after nth", || {
                format!("{label}@{p}: after nth({k}): len {} size_hint {:?}, want {want_left}", c.len(), c.size_hint())
            });
            let after = walk(c.clone());
            let want_after = rest.get(k.saturating_add(1)..).unwrap_or(&[]);
            fails.check(after == want_after, "rest after nth", || format!("{label}@{p}: rest after nth({k}) differs"));
            let f = c.fold(0usize, |a, _| a + 1);
            fails.check(f == want_left, "fold after nth", || {
                format!("{label}@{p}: fold after nth({k}) saw {f}, want {want_left}")
            });
        }
        // Repeated nth.
        if !big {
            let mut c = it.clone();
            let mut idx = 0usize;
            loop {
                let got = c.nth(2);
                idx += 3;
                let want = rest.get(idx - 1).copied();
                fails.check(got == want, "nth repeated", || {
                    format!("{label}@{p}: repeated nth(2) at {idx} = {got:?}, want {want:?}")
                });
                fails.check(c.len() == left.saturating_sub(idx), "nth repeated len", || {
                    format!("{label}@{p}: len after repeated nth")
                });
                if got.is_none() {
                    break;
                }
            }
        }

        // skip / step_by / take.
        for k in [0usize, 1, 63, 64, 65, left, left + 3] {
            if big && !(k == 0 || k == 64 || k == left) {
                continue;
            }
            let s = it.clone().skip(k);
            let want = rest.get(k..).unwrap_or(&[]);
            fails.check(s.len() == want.len(), "skip len", || format!("{label}@{p}: skip({k}).len() {}", s.len()));
            let got: Vec<T> = s.collect();
            fails.check(got == want, "skip", || format!("{label}@{p}: skip({k}) differs"));
            let got = walk(it.clone().skip(k));
            fails.check(got == want, "skip next", || format!("{label}@{p}: skip({k}) by next differs"));
        }
        for step in [1usize, 2, 3, 64] {
            if big && step != 3 {
                continue;
            }
            let mut sb = it.clone().step_by(step);
            let want: Vec<T> = rest.iter().copied().step_by(step).collect();
            let mut got = Vec::new();
            loop {
                let exp = want.len() - got.len();
                let sh = sb.size_hint();
                fails.check(sh == (exp, Some(exp)), "step_by size_hint", || {
                    format!("{label}@{p}: step_by({step}) after {}: size_hint {sh:?}, want {exp}", got.len())
                });
                match sb.next() {
                    Some(x) => got.push(x),
                    None => break,
                }
                if big && got.len() > 50 {
                    break;
                }
            }
            if !big {
                fails.check(got == want, "step_by", || format!("{label}@{p}: step_by({step}) differs"));
            }
            let folded: Vec<T> = it.clone().step_by(step).collect();
            fails.check(folded == want, "step_by collect", || format!("{label}@{p}: step_by({step}).collect differs"));
        }
        let t: Vec<T> = it.clone().take(5).collect();
        fails.check(t == rest[..left.min(5)], "take", || format!("{label}@{p}: take(5) differs"));

        // Short-circuiting internal iteration, stopped then continued.
        let ms: Vec<usize> = if left == 0 {
            vec![]
        } else if big {
            vec![0, left / 2, left - 1]
        } else {
            let mut v = vec![0, 1, left / 2, left - 1];
            v.retain(|&m| m < left);
            v
        };
        for m in ms {
            let target = rest[m];
            // find
            let mut c = it.clone();
            let got = c.find(|x| *x == target);
            fails.check(got == Some(target), "find", || format!("{label}@{p}: find #{m} = {got:?}"));
            let want_left = left - m - 1;
            fails.check(c.len() == want_left, "len after find", || {
                format!("{label}@{p}: len after find #{m}: {}, want {want_left}", c.len())
            });
            let after = walk(c);
            fails.check(after == rest[m + 1..], "rest after find", || {
                format!("{label}@{p}: rest after find #{m} differs")
            });
            // position
            let mut c = it.clone();
            let pos = c.position(|x| x == target);
            fails.check(pos == Some(m), "position", || format!("{label}@{p}: position = {pos:?}, want {m}"));
            fails.check(c.len() == want_left, "len after position", || {
                format!("{label}@{p}: len after position {}", c.len())
            });
            let after: Vec<T> = c.by_ref().collect();
            fails.check(after == rest[m + 1..], "rest after position", || {
                format!("{label}@{p}: rest after position differs")
            });
            // any / all
            let mut c = it.clone();
            fails.check(c.any(|x| x == target), "any", || format!("{label}@{p}: any false"));
            fails.check(c.len() == want_left, "len after any", || format!("{label}@{p}: len after any {}", c.len()));
            let f = c.fold(Vec::new(), |mut v, x| {
                v.push(x);
                v
            });
            fails.check(f == rest[m + 1..], "fold after any", || format!("{label}@{p}: fold after any differs"));
            let mut c = it.clone();
            fails.check(!c.all(|x| x != target), "all", || format!("{label}@{p}: all true"));
            fails.check(c.len() == want_left, "len after all", || format!("{label}@{p}: len after all {}", c.len()));
            let cnt = c.count();
            fails.check(cnt == want_left, "count after all", || format!("{label}@{p}: count after all {cnt}"));
            // try_fold
            let mut c = it.clone();
            let r = c.try_fold(
                0usize,
                |acc, x| if acc == m { ControlFlow::Break(x) } else { ControlFlow::Continue(acc + 1) },
            );
            fails.check(r == ControlFlow::Break(target), "try_fold", || {
                format!("{label}@{p}: try_fold broke with {r:?}")
            });
            fails.check(c.len() == want_left, "len after try_fold", || {
                format!("{label}@{p}: len after try_fold {}", c.len())
            });
            let l = c.last();
            fails.check(l == rest[m + 1..].last().copied(), "last after try_fold", || {
                format!("{label}@{p}: last after try_fold {l:?}")
            });
            // by_ref + take, then a for loop
            let mut c = it.clone();
            let head: Vec<T> = c.by_ref().take(m + 1).collect();
            fails.check(head == rest[..=m], "by_ref take", || format!("{label}@{p}: by_ref().take({}) differs", m + 1));
            fails.check(c.len() == want_left, "len after by_ref", || {
                format!("{label}@{p}: len after by_ref take {}", c.len())
            });
            let mut tail = Vec::new();
            for x in c {
                tail.push(x);
            }
            fails.check(tail == rest[m + 1..], "for after by_ref", || {
                format!("{label}@{p}: for loop after by_ref differs")
            });
        }

        // The original, continued by next(), is still right.
        let orig = walk(it);
        fails.check(orig == rest, "original after probes", || format!("{label}@{p}: original's rest differs"));
    }
    reference
}

type Model = HashMap<u64, u64>;

fn model_pairs(m: &Model) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = m.iter().map(|(k, v)| (*k, *v)).collect();
    v.sort_unstable();
    v
}

/// All iterators of one view: iter, keys, values, and the IntoIterator forms.
fn check_view<S: BuildHasher>(fails: &mut Fails, label: &str, view: &View<u64, u64, S>, model: &Model) {
    fails.check(view.len() == model.len(), "view len", || {
        format!("{label}: view.len {} model {}", view.len(), model.len())
    });
    let items = check_exact(fails, &format!("{label}.iter"), || view.iter());
    let mut got: Vec<(u64, u64)> = items.iter().map(|(k, v)| (**k, **v)).collect();
    got.sort_unstable();
    fails.check(got == model_pairs(model), "contents", || format!("{label}: iteration contents differ from the model"));
    let keys = check_exact(fails, &format!("{label}.keys"), || view.keys());
    fails.check(keys.iter().copied().eq(items.iter().map(|(k, _)| *k)), "keys order", || {
        format!("{label}: keys != iter keys")
    });
    let values = check_exact(fails, &format!("{label}.values"), || view.values());
    fails.check(values.iter().copied().eq(items.iter().map(|(_, v)| *v)), "values order", || {
        format!("{label}: values != iter values")
    });
    let into: Vec<_> = view.into_iter().collect();
    fails.check(into == items, "into_iter", || format!("{label}: &View into_iter differs"));
}

fn check_map<S: BuildHasher + Clone>(fails: &mut Fails, label: &str, map: &SnapMap<u64, u64, S>, model: &Model) {
    let snap = map.snapshot();
    check_view(fails, &format!("{label}/snapshot"), &snap, model);
    let into: Vec<_> = (&snap).into_iter().collect();
    let direct: Vec<_> = snap.iter().collect();
    fails.check(into == direct, "into_iter", || format!("{label}: &Snapshot into_iter differs"));
    // ReadGuard.
    let guard = map.read();
    if guard.len() <= 5000 {
        check_view(fails, &format!("{label}/guard"), &guard, model);
    } else {
        let items = check_exact(fails, &format!("{label}/guard.iter"), || guard.iter());
        fails.check(items.len() == model.len(), "guard len", || format!("{label}: guard yields {}", items.len()));
    }
    let gi: Vec<_> = (&guard).into_iter().collect();
    fails.check(gi.len() == model.len(), "into_iter", || format!("{label}: &ReadGuard into_iter len {}", gi.len()));
    drop(guard);
    // Tx: the working copy's iteration, with and without writes of its own.
    if model.len() <= 5000 {
        map.update(|tx| {
            check_exact(fails, &format!("{label}/tx.iter"), || tx.iter());
            check_exact(fails, &format!("{label}/tx.keys"), || tx.keys());
            check_exact(fails, &format!("{label}/tx.values"), || tx.values());
            // Own writes: add then remove a few keys, then iterate.
            let fresh = 1u64 << 50;
            for i in 0..70u64 {
                tx.insert(fresh + i, i);
            }
            let mut tm = model.clone();
            for i in 0..70u64 {
                tm.insert(fresh + i, i);
            }
            for k in model.keys().copied().filter(|k| k % 5 == 0).collect::<Vec<_>>() {
                tx.remove(&k);
                tm.remove(&k);
            }
            for i in (0..70u64).step_by(3) {
                tx.remove(&(fresh + i));
                tm.remove(&(fresh + i));
            }
            fails.check(tx.len() == tm.len(), "tx len", || format!("{label}: tx.len {} model {}", tx.len(), tm.len()));
            let items = check_exact(fails, &format!("{label}/tx(written).iter"), || tx.iter());
            let mut got: Vec<(u64, u64)> = items.iter().map(|(k, v)| (**k, **v)).collect();
            got.sort_unstable();
            fails.check(got == model_pairs(&tm), "tx contents", || format!("{label}: tx iteration differs from model"));
            check_exact(fails, &format!("{label}/tx(written).keys"), || tx.keys());
            // Undo everything so that the map stays equal to `model`.
            tx.clear();
            for (k, v) in model {
                tx.insert(*k, *v);
            }
        });
    }
}

/// Builds maps of `sizes` with hasher `S` in several ways and checks them all.
fn run_sizes<S: BuildHasher + Clone + Default>(
    test: &str,
    sizes: &[usize],
    keys: impl Fn(usize) -> u64,
    sample: Option<u32>,
) {
    let mut fails = Fails::default();
    for &n in sizes {
        let model: Model = (0..n).map(|i| (keys(i), i as u64 * 7 + 1)).collect();
        let build = || {
            let mut b = SnapMap::<u64, u64>::builder().hasher(S::default()).name(format!("audit-{test}"));
            if let Some(s) = sample {
                b = b.sample_every(s);
            }
            b.build()
        };
        // Bulk load.
        let map = build();
        map.update(|tx| tx.extend(model.iter().map(|(k, v)| (*k, *v))));
        check_map(&mut fails, &format!("{test} n={n} bulk"), &map, &model);

        // Single writes (each a version), for the smaller sizes.
        if n <= 4097 {
            let map = build();
            let mut pairs = model_pairs(&model);
            pairs.reverse();
            for (k, v) in &pairs {
                map.insert(*k, *v);
            }
            check_map(&mut fails, &format!("{test} n={n} singles"), &map, &model);
        }

        // After removals (every third key), and then a re-insert of some.
        let map = build();
        map.update(|tx| tx.extend(model.iter().map(|(k, v)| (*k, *v))));
        let mut m2 = model.clone();
        let old = map.snapshot();
        let victims: Vec<u64> = (0..n).step_by(3).map(&keys).collect();
        if n <= 1000 {
            for k in &victims {
                map.remove(k);
                m2.remove(k);
            }
        } else {
            map.update(|tx| {
                for k in &victims {
                    tx.remove(k);
                }
            });
            for k in &victims {
                m2.remove(k);
            }
        }
        check_map(&mut fails, &format!("{test} n={n} removed"), &map, &m2);
        // The old snapshot still iterates the old contents.
        check_view(&mut fails, &format!("{test} n={n} old"), &old, &model);
        // Remove everything.
        map.update(|tx| {
            for k in model.keys() {
                tx.remove(k);
            }
        });
        check_map(&mut fails, &format!("{test} n={n} emptied"), &map, &Model::new());
    }
    fails.finish(test);
}

/// The largest map: past 64 × 64 entries, so three levels under a hasher
/// that spreads keys (100K in the first run of these tests, 8 minutes in all
/// in a debug build; with the sizes below, ~85 s with `instrument`).
const BIG: usize = 10_000;
const SIZES: [usize; 10] = [0, 1, 2, 63, 64, 65, 4095, 4097, 4096, BIG];
const COLLIDING_SIZES: [usize; 8] = [0, 1, 2, 63, 64, 65, 4095, 4097];
/// For iterations that time every `next()`.
const SAMPLED_SIZES: [usize; 7] = [0, 1, 2, 63, 64, 65, 300];

fn mix(i: usize) -> u64 {
    let mut z = i as u64 ^ 0x1234_5678;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[test]
fn iter_default_hasher() {
    run_sizes::<foldhash::fast::RandomState>("default", &SIZES, |i| i as u64, None);
}

#[test]
fn iter_identity_hasher() {
    run_sizes::<IdState>("identity", &SIZES, |i| i as u64, None);
}

#[test]
fn iter_identity_hasher_spread_keys() {
    run_sizes::<IdState>("identity-mixed", &SIZES, mix, None);
}

#[test]
fn iter_high_bits_hasher() {
    run_sizes::<HighState>("high-bits", &SIZES, |i| i as u64, None);
}

#[test]
fn iter_full_collisions() {
    run_sizes::<ConstState>("collide", &COLLIDING_SIZES, |i| i as u64, None);
}

/// Many collision nodes: keys `i` and `i + 2^24` share their whole hash
/// under `HighState` (`key << 40`).
fn grouped_key(i: usize) -> u64 {
    (i % 3000) as u64 + (((i / 3000) as u64) << 24)
}

#[test]
fn iter_many_collision_nodes() {
    run_sizes::<HighState>("collision-groups", &[0, 1, 2, 3001, 6001, BIG], grouped_key, None);
}

/// The batch's other writes (entry, retain, assign, get_mut), then its iteration.
#[test]
fn iter_tx_after_entry_retain_assign() {
    fn run<S: BuildHasher + Clone + Default>(fails: &mut Fails, test: &str, keys: fn(usize) -> u64) {
        for n in [0usize, 1, 65, 4097] {
            let map: SnapMap<u64, u64, S> = SnapMap::builder().hasher(S::default()).build();
            let mut model: Model = (0..n).map(|i| (keys(i), i as u64)).collect();
            map.update(|tx| tx.extend(model.iter().map(|(k, v)| (*k, *v))));
            map.update(|tx| {
                for i in 0..n + 70 {
                    let k = keys(i);
                    *tx.entry(k).or_insert(1_000_000 + i as u64) += 1;
                    *model.entry(k).or_insert(1_000_000 + i as u64) += 1;
                }
                tx.retain(|k, _| k % 4 != 1);
                model.retain(|k, _| k % 4 != 1);
                if let Some(v) = tx.get_mut(&keys(0)) {
                    *v = 777_777_777;
                    model.insert(keys(0), 777_777_777);
                }
                let items = check_exact(fails, &format!("{test} n={n} tx(entry,retain)"), || tx.iter());
                fails.check(items.len() == model.len(), "tx len", || {
                    format!("{test} n={n}: {} vs {}", items.len(), model.len())
                });
                let mut got: Vec<(u64, u64)> = items.iter().map(|(k, v)| (**k, **v)).collect();
                got.sort_unstable();
                fails.check(got == model_pairs(&model), "tx contents", || {
                    format!("{test} n={n}: entry/retain contents")
                });
                // assign: half the keys, values changed for some.
                let table: Vec<(u64, u64)> =
                    (0..n).step_by(2).map(|i| (keys(i), i as u64 * 2 + u64::from(i % 3 == 0))).collect();
                tx.assign(table.iter().copied());
                model = table.iter().copied().collect();
                let items = check_exact(fails, &format!("{test} n={n} tx(assign)"), || tx.iter());
                let mut got: Vec<(u64, u64)> = items.iter().map(|(k, v)| (**k, **v)).collect();
                got.sort_unstable();
                fails.check(got == model_pairs(&model), "tx contents", || format!("{test} n={n}: assign contents"));
            });
            let snap = map.snapshot();
            check_view(fails, &format!("{test} n={n} after-batch"), &snap, &model);
        }
    }
    let mut fails = Fails::default();
    run::<foldhash::fast::RandomState>(&mut fails, "tx-default", |i| i as u64);
    run::<ConstState>(&mut fails, "tx-collide", |i| i as u64);
    run::<HighState>(&mut fails, "tx-groups", grouped_key);
    run::<IdState>(&mut fails, "tx-identity", mix);
    fails.finish("iter_tx_after_entry_retain_assign");
}

#[test]
fn iter_sampled_every_call() {
    // Every `next()` timed and recorded: slow in a debug build, so sizes
    // that cross a node's end and a second level, not the largest.
    run_sizes::<foldhash::fast::RandomState>("sampled1", &SAMPLED_SIZES, |i| i as u64, Some(1));
    run_sizes::<ConstState>("sampled1-collide", &[0, 1, 2, 65], |i| i as u64, Some(1));
    run_sizes::<HighState>("sampled1-high", &[0, 1, 65, 300], |i| i as u64, Some(1));
}

#[test]
fn iter_sampled_sometimes() {
    for every in [0, 2, 3, 7] {
        run_sizes::<foldhash::fast::RandomState>(&format!("sampled{every}"), &SAMPLED_SIZES, |i| i as u64, Some(every));
    }
    run_sizes::<foldhash::fast::RandomState>("sampled3-big", &[4097], |i| i as u64, Some(3));
}

#[test]
fn iter_traced() {
    // With a subscriber that enables the `snapview.iter` span (DEBUG), every
    // `next()` is watched. (TRACE would add a span per `next()`; a bare
    // `Registry` under `with_default` then grows by ~160 bytes per span
    // created, with plain `tracing` spans too: not snapview's, and it made
    // this test run out of memory.)
    use tracing_subscriber::layer::SubscriberExt;
    let created = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::DEBUG)
        .with(span_count::Created(created.clone()));
    with_subscriber(subscriber, || {
        run_sizes::<foldhash::fast::RandomState>("traced", &SAMPLED_SIZES, |i| i as u64, None);
        run_sizes::<ConstState>("traced-collide", &[0, 2, 65], |i| i as u64, Some(2));
    });
    let created = created.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!("iter_traced: {created} spans created");
    // Instrumented, the iterations were traced (> 300K spans), so the
    // contracts above held with every `next()` watched; plain, none is made.
    if cfg!(feature = "instrument") {
        assert!(created > 100_000, "only {created} spans: the iterations were not traced");
    } else {
        assert_eq!(created, 0, "spans without the instrument feature");
    }
}

// ---------------------------------------------------------------- diff

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    Added,
    Removed,
    Updated,
}

type Flat = (u64, Kind, Option<u64>, Option<u64>);

fn flat(c: &Change<'_, u64, u64>) -> Flat {
    match *c {
        Change::Added(k, v) => (*k, Kind::Added, None, Some(*v)),
        Change::Removed(k, v) => (*k, Kind::Removed, Some(*v), None),
        Change::Updated { key, old, new } => (*key, Kind::Updated, Some(*old), Some(*new)),
    }
}

fn model_diff(old: &Model, new: &Model) -> Vec<Flat> {
    let mut out = Vec::new();
    for (k, v) in old {
        match new.get(k) {
            None => out.push((*k, Kind::Removed, Some(*v), None)),
            Some(v2) if v2 != v => out.push((*k, Kind::Updated, Some(*v), Some(*v2))),
            Some(_) => {}
        }
    }
    for (k, v) in new {
        if !old.contains_key(k) {
            out.push((*k, Kind::Added, None, Some(*v)));
        }
    }
    out.sort_unstable();
    out
}

fn check_diff<S: BuildHasher>(
    fails: &mut Fails,
    label: &str,
    old: &View<u64, u64, S>,
    new: &View<u64, u64, S>,
    mo: &Model,
    mn: &Model,
) {
    let want = model_diff(mo, mn);
    let mut d = old.diff(new);
    let _ = format!("{d:?}");
    let mut got = Vec::new();
    loop {
        let (lo, hi) = d.size_hint();
        let rest = want.len().saturating_sub(got.len());
        fails.check(lo <= rest, "diff size_hint lower", || {
            format!("{label}: after {}: size_hint lower {lo} > {rest} left", got.len())
        });
        fails.check(hi.is_none_or(|h| h >= rest), "diff size_hint upper", || {
            format!("{label}: after {}: upper {hi:?} < {rest} left", got.len())
        });
        match d.next() {
            Some(c) => {
                let c2 = c;
                fails.check(c2 == c && format!("{c2:?}") == format!("{c:?}"), "change copy", || {
                    format!("{label}: Change copy differs")
                });
                fails.check(c.key() == &flat(&c).0, "change key", || format!("{label}: Change::key"));
                got.push(flat(&c));
            }
            None => break,
        }
        if got.len() > want.len() + 10 {
            break;
        }
    }
    for i in 0..5 {
        let x = d.next();
        fails.check(x.is_none(), "diff fused", || format!("{label}: next() #{i} after end gave {x:?}"));
    }
    let (lo, _) = d.size_hint();
    fails.check(lo == 0, "diff size_hint at end", || format!("{label}: size_hint lower {lo} at end"));
    let mut sorted = got.clone();
    sorted.sort_unstable();
    let mut keys: Vec<u64> = sorted.iter().map(|c| c.0).collect();
    keys.dedup();
    fails.check(keys.len() == sorted.len(), "diff key once", || format!("{label}: a key appears twice"));
    fails.check(sorted == want, "diff model", || {
        let extra: Vec<_> = sorted.iter().filter(|c| !want.contains(c)).take(5).collect();
        let missing: Vec<_> = want.iter().filter(|c| !sorted.contains(c)).take(5).collect();
        format!("{label}: got {} changes, want {}; extra {extra:?} missing {missing:?}", sorted.len(), want.len())
    });
    // Default consumers agree with next().
    let c = old.diff(new).count();
    fails.check(c == want.len(), "diff count", || format!("{label}: count {c} want {}", want.len()));
    let mut v: Vec<Flat> = old.diff(new).map(|c| flat(&c)).collect();
    v.sort_unstable();
    fails.check(v == want, "diff collect", || format!("{label}: collect differs"));
    if !want.is_empty() {
        let mut d = old.diff(new);
        let first = d.next().map(|c| flat(&c));
        let second = d.nth(want.len());
        fails.check(second.is_none(), "diff nth past end", || format!("{label}: nth past end gave {second:?}"));
        fails.check(d.next().is_none(), "diff fused after nth", || format!("{label}: not fused after nth"));
        let _ = first;
    }
}

/// Random writes on a map with hasher `S`, snapshots along the way; every
/// ordered pair of snapshots is diffed and checked against the model.
fn run_diff<S: BuildHasher + Clone + Default>(test: &str, base_sizes: &[usize], keyspace: u64, seed: u64) {
    run_diff_keys::<S>(test, base_sizes, keyspace, seed, |k| k);
}

fn run_diff_keys<S: BuildHasher + Clone + Default>(
    test: &str,
    base_sizes: &[usize],
    keyspace: u64,
    seed: u64,
    key_of: fn(u64) -> u64,
) {
    let mut fails = Fails::default();
    let mut rng = seed | 1;
    let mut rand = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for &n in base_sizes {
        let map: SnapMap<u64, u64, S> = SnapMap::builder().hasher(S::default()).build();
        let mut model = Model::new();
        let mut saved: Vec<(Snapshot<u64, u64, S>, Model)> = vec![(map.snapshot(), model.clone())];
        map.update(|tx| {
            for _ in 0..n {
                let k = key_of(rand() % keyspace);
                let v = rand() % 4;
                tx.insert(k, v);
                model.insert(k, v);
            }
        });
        saved.push((map.snapshot(), model.clone()));
        for round in 0..8 {
            let writes = [1usize, 2, 5, 40, 200, 1][round % 6];
            map.update(|tx| {
                for _ in 0..writes {
                    let k = key_of(rand() % keyspace);
                    match rand() % 5 {
                        0 | 1 => {
                            let v = rand() % 4;
                            tx.insert(k, v);
                            model.insert(k, v);
                        }
                        2 => {
                            tx.remove(&k);
                            model.remove(&k);
                        }
                        3 => {
                            // Same value again (no change), if present.
                            if let Some(v) = model.get(&k).copied() {
                                tx.insert(k, v);
                            }
                        }
                        _ => {
                            if let Some(v) = tx.get_mut(&k) {
                                *v = (*v + 1) % 4;
                                model.insert(k, *v);
                            }
                        }
                    }
                }
            });
            saved.push((map.snapshot(), model.clone()));
        }
        // Clear, then reload the same.
        let before = model.clone();
        map.clear();
        saved.push((map.snapshot(), Model::new()));
        map.update(|tx| tx.extend(before.iter().map(|(k, v)| (*k, *v))));
        saved.push((map.snapshot(), before.clone()));
        for (i, (a, ma)) in saved.iter().enumerate() {
            for (j, (b, mb)) in saved.iter().enumerate() {
                check_diff(&mut fails, &format!("{test} n={n} same-map v{i}->v{j}"), a, b, ma, mb);
            }
        }
        // Different maps (same hasher type): a second map per model.
        for (i, (_, ma)) in saved.iter().enumerate().step_by(2) {
            let other: SnapMap<u64, u64, S> = SnapMap::builder().hasher(S::default()).build();
            other.update(|tx| tx.extend(ma.iter().map(|(k, v)| (*k, *v))));
            let o = other.snapshot();
            for (j, (b, mb)) in saved.iter().enumerate() {
                check_diff(&mut fails, &format!("{test} n={n} other-map m{i}->v{j}"), &o, b, ma, mb);
                check_diff(&mut fails, &format!("{test} n={n} other-map v{j}->m{i}"), b, &o, mb, ma);
            }
        }
    }
    fails.finish(test);
}

#[test]
fn diff_default_hasher() {
    run_diff::<foldhash::fast::RandomState>("diff-default", &[0, 1, 2, 63, 64, 65, 1000, 5000], 6000, 0xDEAD);
}

#[test]
fn diff_identity_hasher() {
    run_diff::<IdState>("diff-identity", &[0, 1, 2, 65, 1000, 5000], 6000, 0xBEEF);
    run_diff::<IdState>("diff-identity-small-keyspace", &[0, 10, 100], 130, 0xF00D);
}

#[test]
fn diff_high_bits_hasher() {
    run_diff::<HighState>("diff-high", &[0, 1, 2, 65, 1000, 5000], 6000, 0xC0FFEE);
}

#[test]
fn diff_full_collisions() {
    run_diff::<ConstState>("diff-collide", &[0, 1, 2, 10, 65, 300], 400, 0xABCD);
    run_diff::<ConstState>("diff-collide-tiny", &[0, 1, 2, 3], 4, 0x1357);
}

#[test]
fn diff_many_collision_nodes() {
    // keyspace above 2^24: keys k and k + 2^24 share their hash.
    run_diff_keys::<HighState>("diff-groups", &[0, 1, 2, 65, 1000, 4000], 9000, 0x9999, |k| grouped_key(k as usize));
    run_diff_keys::<HighState>("diff-groups-dense", &[0, 5, 40], 60, 0x7777, |k| (k % 20) + ((k / 20) << 24));
}

#[test]
fn diff_big() {
    run_diff::<foldhash::fast::RandomState>("diff-big", &[BIG], 2 * BIG as u64, 0x2468);
}

#[test]
fn diff_sampled_maps() {
    // The diff probe, with every call sampled.
    let mut fails = Fails::default();
    let map: SnapMap<u64, u64> = SnapMap::builder().sample_every(1).build();
    let mut model = Model::new();
    let s0 = map.snapshot();
    for i in 0..300u64 {
        map.insert(i, i);
        model.insert(i, i);
    }
    let s1 = map.snapshot();
    check_diff(&mut fails, "sampled 0->1", &s0, &s1, &Model::new(), &model);
    check_diff(&mut fails, "sampled 1->0", &s1, &s0, &model, &Model::new());
    fails.finish("diff_sampled_maps");
}

#[test]
fn change_eq_and_debug() {
    let (a, b, c) = (1u64, 2u64, 3u64);
    let added: Change<'_, u64, u64> = Change::Added(&a, &b);
    let removed: Change<'_, u64, u64> = Change::Removed(&a, &b);
    let updated: Change<'_, u64, u64> = Change::Updated { key: &a, old: &b, new: &c };
    assert_eq!(added, Change::Added(&1, &2));
    assert_ne!(added, removed);
    assert_ne!(updated, Change::Updated { key: &a, old: &c, new: &b });
    assert_eq!(format!("{added:?}"), "Added(1, 2)");
    assert_eq!(format!("{removed:?}"), "Removed(1, 2)");
    assert_eq!(format!("{updated:?}"), "Updated { key: 1, old: 2, new: 3 }");
    assert_eq!(*updated.key(), 1);
    let copy = updated;
    assert_eq!(copy, updated);
    #[allow(clippy::clone_on_copy)]
    let cl = updated.clone();
    assert_eq!(cl, updated);
}

/// Views of two different maps whose hashers are the same type but behave
/// differently (seeded foldhash): the look-up fallback.
#[test]
fn diff_unrelated_seeded() {
    let mut fails = Fails::default();
    for n in [0usize, 1, 65, 3000] {
        let ma: Model = (0..n as u64).map(|k| (k, k % 3)).collect();
        let mut mb = ma.clone();
        for k in (0..n as u64).step_by(4) {
            mb.remove(&k);
        }
        for k in (0..n as u64).step_by(5) {
            mb.insert(k, 9);
        }
        for k in n as u64..n as u64 + 20 {
            mb.insert(k, 1);
        }
        let a: SnapMap<u64, u64, foldhash::fast::FixedState> =
            SnapMap::builder().hasher(foldhash::fast::FixedState::with_seed(1)).build();
        let b: SnapMap<u64, u64, foldhash::fast::FixedState> =
            SnapMap::builder().hasher(foldhash::fast::FixedState::with_seed(2)).build();
        a.update(|tx| tx.extend(ma.iter().map(|(k, v)| (*k, *v))));
        b.update(|tx| tx.extend(mb.iter().map(|(k, v)| (*k, *v))));
        let (sa, sb) = (a.snapshot(), b.snapshot());
        check_diff(&mut fails, &format!("seeded n={n} a->b"), &sa, &sb, &ma, &mb);
        check_diff(&mut fails, &format!("seeded n={n} b->a"), &sb, &sa, &mb, &ma);
        // Same seeds, different maps.
        let c: SnapMap<u64, u64, foldhash::fast::FixedState> =
            SnapMap::builder().hasher(foldhash::fast::FixedState::with_seed(1)).build();
        c.update(|tx| tx.extend(mb.iter().map(|(k, v)| (*k, *v))));
        let sc = c.snapshot();
        check_diff(&mut fails, &format!("same-seed n={n} a->c"), &sa, &sc, &ma, &mb);
        check_diff(&mut fails, &format!("same-seed n={n} c->a"), &sc, &sa, &mb, &ma);
    }
    fails.finish("diff_unrelated_seeded");
}

// ---------------------------------------------------------------- traced spans

/// Runs `f` under `subscriber`, with a second `Dispatch` registered for the
/// whole run first: while only one is, tracing-core caches a callsite's
/// interest from the default of whichever thread reaches it first
/// (tokio-rs/tracing#3611), and the other tests of this file iterate with
/// none, which could silence these tests' spans (see `instrument_spans.rs`).
fn with_subscriber(subscriber: impl tracing::Subscriber + Send + Sync + 'static, f: impl FnOnce()) {
    static ANCHOR: std::sync::LazyLock<tracing::Dispatch> =
        std::sync::LazyLock::new(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
    std::sync::LazyLock::force(&ANCHOR);
    tracing::subscriber::with_default(subscriber, f);
}

mod span_count {
    use std::sync::atomic::{AtomicI64, Ordering};
    use tracing::Subscriber;
    use tracing::span::{Attributes, Id};
    use tracing_subscriber::layer::{Context, Layer};

    pub static OPEN: AtomicI64 = AtomicI64::new(0);
    pub static CREATED: AtomicI64 = AtomicI64::new(0);
    pub static ENTERED: AtomicI64 = AtomicI64::new(0);

    pub struct Created(pub std::sync::Arc<std::sync::atomic::AtomicU64>);
    impl<S: Subscriber> Layer<S> for Created {
        fn on_new_span(&self, _: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    pub struct Count;
    impl<S: Subscriber> Layer<S> for Count {
        fn on_new_span(&self, _: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
            OPEN.fetch_add(1, Ordering::SeqCst);
            CREATED.fetch_add(1, Ordering::SeqCst);
        }
        fn on_close(&self, _: Id, _: Context<'_, S>) {
            OPEN.fetch_sub(1, Ordering::SeqCst);
        }
        fn on_enter(&self, _: &Id, _: Context<'_, S>) {
            ENTERED.fetch_add(1, Ordering::SeqCst);
        }
        fn on_exit(&self, _: &Id, _: Context<'_, S>) {
            ENTERED.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Under a subscriber that enables every span, an iteration opens spans and
/// must close them all: none live once every iterator is dropped.
#[test]
fn traced_iteration_closes_its_spans() {
    use std::sync::atomic::Ordering::SeqCst;
    use tracing_subscriber::layer::SubscriberExt;
    let subscriber = tracing_subscriber::registry().with(span_count::Count);
    with_subscriber(subscriber, || {
        let map: SnapMap<u64, u64> = (0..200u64).map(|k| (k, k)).collect();
        let snap = map.snapshot();
        let base = span_count::OPEN.load(SeqCst);
        let report = |what: &str| {
            eprintln!(
                "{what}: open {} (base {base}), created {}, entered {}",
                span_count::OPEN.load(SeqCst),
                span_count::CREATED.load(SeqCst),
                span_count::ENTERED.load(SeqCst)
            );
        };
        let n = snap.iter().count();
        report("count");
        let _ = snap.iter().position(|(k, _)| *k == 1000);
        report("position (all)");
        let mut it = snap.keys();
        let _ = it.position(|k| *k == u64::MAX);
        report("keys position held");
        drop(it);
        report("keys position dropped");
        let c = snap.iter();
        let _ = c.clone().count();
        report("clone count");
        drop(c);
        for _ in 0..100 {
            let _ = walk(snap.iter());
        }
        report("100 walks");
        assert_eq!(n, 200);
        if cfg!(feature = "instrument") {
            assert!(span_count::CREATED.load(SeqCst) >= 100, "the walks opened no spans to close");
        }
        assert_eq!(span_count::OPEN.load(SeqCst), base, "spans left open");
        assert_eq!(span_count::ENTERED.load(SeqCst), 0, "spans left entered");
    });
}
