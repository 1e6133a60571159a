//! Overlap of video decoding with model execution: inputs are prepared on worker threads while
//! the caller's thread runs the engine, and results come back in input order.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

/// Maps `prepare` over `items` on `workers` threads, at most `ahead` results buffered ahead of the
/// consumer, and calls `consume` on each result in the original order on the calling thread.
/// Returns the first error of `consume`, after stopping the workers.
pub fn prefetch_ordered<I, T, E, P, C>(
    items: Vec<I>,
    workers: usize,
    ahead: usize,
    prepare: P,
    mut consume: C,
) -> Result<(), E>
where
    I: Send + 'static,
    T: Send + 'static,
    P: Fn(&I) -> T + Send + Sync + 'static,
    C: FnMut(I, T) -> Result<(), E>,
{
    let n = items.len();
    let queue: Arc<Mutex<std::vec::IntoIter<(usize, I)>>> = Arc::new(Mutex::new(
        items
            .into_iter()
            .enumerate()
            .collect::<Vec<_>>()
            .into_iter(),
    ));
    let (tx, rx) = mpsc::sync_channel::<(usize, I, T)>(ahead.max(1));
    let prepare = Arc::new(prepare);
    let handles: Vec<_> = (0..workers.max(1))
        .map(|_| {
            let queue = Arc::clone(&queue);
            let tx = tx.clone();
            let prepare = Arc::clone(&prepare);
            thread::spawn(move || loop {
                let next = queue.lock().expect("queue lock").next();
                let Some((i, item)) = next else { break };
                let out = prepare(&item);
                if tx.send((i, item, out)).is_err() {
                    break; // consumer stopped
                }
            })
        })
        .collect();
    drop(tx);

    let mut pending: BTreeMap<usize, (I, T)> = BTreeMap::new();
    let mut next = 0;
    let mut result = Ok(());
    while next < n {
        if let Some((item, out)) = pending.remove(&next) {
            if let Err(e) = consume(item, out) {
                result = Err(e);
                break;
            }
            next += 1;
            continue;
        }
        match rx.recv() {
            Ok((i, item, out)) => {
                pending.insert(i, (item, out));
            }
            Err(_) => break,
        }
    }
    // Unblock workers waiting on a full channel, then wait for them.
    drop(rx);
    for h in handles {
        let _ = h.join();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_input_order_despite_uneven_work() {
        let items: Vec<u64> = (0..20).collect();
        let mut seen = Vec::new();
        prefetch_ordered(
            items,
            3,
            2,
            |&i| {
                std::thread::sleep(std::time::Duration::from_millis((20 - i) % 7));
                i * 10
            },
            |i, v| {
                seen.push((i, v));
                Ok::<(), ()>(())
            },
        )
        .unwrap();
        let want: Vec<(u64, u64)> = (0..20).map(|i| (i, i * 10)).collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn a_consumer_error_stops_the_run() {
        let mut count = 0;
        let r = prefetch_ordered(
            (0..100).collect::<Vec<u32>>(),
            2,
            1,
            |&i| i,
            |i, _| {
                count += 1;
                if i == 5 {
                    Err(i)
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(r, Err(5));
        assert_eq!(count, 6);
    }
}
