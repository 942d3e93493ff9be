//! Recording that devices were heard, many at a time.
//!
//! Every watch connect and keep-alive records the device's `last_heard_at` (and battery). As one
//! statement each, 20,000 watches reconnecting after a network outage are 20,000 write
//! transactions, each with its own disk sync, competing with the fix group commits for
//! SQLite's one writer. So, like fixes, these go through one writer task: each caller waits for
//! the write that contains its record (the reply to the device still follows the record), and
//! whatever queued while a write ran becomes the next write.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use trygg_store::{DeviceHeard, Store, StoreError};

/// Records beyond this many wait for the next write.
const MAX_PER_WRITE: usize = 2_000;

type Reply = oneshot::Sender<Result<(), Arc<StoreError>>>;

/// A handle to the writer task; it ends when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct HeardWriter {
    records: mpsc::UnboundedSender<(DeviceHeard, Reply)>,
}

/// Why a record was not written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeardError {
    #[error("{0}")]
    Store(Arc<StoreError>),
    #[error("the writer has stopped")]
    Stopped,
}

impl HeardWriter {
    /// Starts the writer task on the current runtime.
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (records, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(store, rx));
        Self { records }
    }

    /// Records `heard` and returns once it is written.
    pub(crate) async fn record(&self, heard: DeviceHeard) -> Result<(), HeardError> {
        let (reply, written) = oneshot::channel();
        self.records.send((heard, reply)).map_err(|_| HeardError::Stopped)?;
        match written.await {
            Ok(result) => result.map_err(HeardError::Store),
            Err(_) => Err(HeardError::Stopped),
        }
    }
}

async fn write_loop(store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<(DeviceHeard, Reply)>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, MAX_PER_WRITE).await > 0 {
        let (heard, replies): (Vec<DeviceHeard>, Vec<Reply>) = std::mem::take(&mut batch).into_iter().unzip();
        let result = store.devices_heard(&heard).await.map_err(Arc::new);
        for reply in replies {
            // A caller that gave up (its connection closed) no longer listens.
            let _ = reply.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, Utc};
    use trygg_core::DeviceId;
    use trygg_store::testing::TestDb;
    use trygg_store::{NewDevice, Protocol};

    use super::*;

    /// A thousand keep-alives at once are all recorded, and each caller returns only after its
    /// own record is readable.
    #[tokio::test]
    async fn concurrent_records_are_all_written_before_their_callers_return() {
        let db = TestDb::sqlite();
        let store = db.store().await;
        let tenant = store.create_tenant("kommun").await.unwrap();
        let ids: Vec<DeviceId> = (0..1_000).map(|i| DeviceId::parse(&format!("w{i}")).unwrap()).collect();
        for id in &ids {
            let new = NewDevice {
                id: id.clone(),
                tenant,
                wearer: None,
                protocol: Protocol::Watch,
                token_hash: None,
            };
            store.register_device(&new).await.unwrap();
        }
        let writer = HeardWriter::start(store.clone());
        let at = Utc::now() - TimeDelta::seconds(5);
        let callers = ids.iter().enumerate().map(|(i, id)| {
            let (writer, store) = (writer.clone(), store.clone());
            let heard = DeviceHeard { device: id.clone(), at, battery_pct: Some((i % 100) as u8) };
            tokio::spawn(async move {
                writer.record(heard.clone()).await.unwrap();
                let status = store.device_statuses(tenant, Some(&heard.device)).await.unwrap();
                assert_eq!(status[0].last_battery_pct, heard.battery_pct, "{}", heard.device);
            })
        });
        for caller in callers.collect::<Vec<_>>() {
            caller.await.unwrap();
        }
    }
}
