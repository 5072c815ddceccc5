//! Work on many independent items at once, on the machine's cores: `add-stage` of a thousand
//! cards parses and validates them, and serialises their stage files, in a few threads.

/// Below this many items one thread is faster than starting others.
const MIN_ITEMS: usize = 64;

/// At most this many threads: enough for a laptop's cores; parsing more cards at once only
/// shares the same memory bandwidth.
const MAX_THREADS: usize = 8;

/// `f` of every item, in the items' order, computed in up to [`MAX_THREADS`] scoped threads
/// (one when there are few items or one core). A panic in `f` is a panic here.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(MAX_THREADS);
    if threads < 2 || items.len() < MIN_ITEMS {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| s.spawn(move || c.iter().map(f).collect::<Vec<R>>()))
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            match h.join() {
                Ok(part) => out.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_the_order_of_many_items_and_of_few() {
        for n in [0, 3, 63, 64, 1000] {
            let items: Vec<usize> = (0..n).collect();
            let out = super::map(&items, |i| i * 2);
            assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>(), "{n}");
        }
    }
}
