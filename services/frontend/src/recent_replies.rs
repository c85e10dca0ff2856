//! Replies kept as bytes until the data behind them changes.

use std::collections::HashMap;
use std::sync::Mutex;

use actix_web::web::Bytes;

/// `/api/readings` and `/api/aggregates` replies answered from the panel's
/// last read, by path and query string: until the next read, the same query
/// gets the same bytes without being listed and serialised again. At most
/// `RECENT_REPLIES` queries a read are kept (about 20 KB each at the default
/// `limit`; a year of daily aggregates is about 60 KB), so a client walking
/// random queries cannot grow it.
#[derive(Default)]
pub struct RecentReplies {
    replies: Mutex<(u64, HashMap<String, Bytes>)>,
}

const RECENT_REPLIES: usize = 256;

impl RecentReplies {
    pub fn get(&self, read: u64, key: &str) -> Option<Bytes> {
        let replies = self.replies.lock().expect("replies lock");
        if replies.0 != read {
            return None;
        }
        replies.1.get(key).cloned()
    }

    pub fn put(&self, read: u64, key: &str, body: Bytes) {
        let mut replies = self.replies.lock().expect("replies lock");
        if replies.0 != read {
            *replies = (read, HashMap::new());
        }
        if replies.1.len() < RECENT_REPLIES {
            replies.1.insert(key.to_owned(), body);
        }
    }
}
