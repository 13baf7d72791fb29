//! A kind the reconciles read from a reflector store rather than the API (EcsPowerSchedules,
//! EcsHolidayCalendars): the store of the current run, the signal that it has been listed, and
//! the watch that fills it and passes on the objects whose spec changed.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::controller::k8s::cluster::scoped_api;
use crate::controller::listed::Listed;

/// The objects of kind `K` of the current controller run. Each run (each leadership term)
/// watches afresh, so the store is swapped when a run starts ([`Reflected::fresh`]).
pub(crate) struct Reflected<K: Resource<DynamicType = ()> + Clone + 'static>(
    RwLock<(Store<K>, Listed)>,
);

/// What fills a [`Reflected`] store for one run (see [`spec_changes`]).
pub(crate) struct ReflectedWriter<K: Resource<DynamicType = ()> + Clone + 'static> {
    writer: reflector::store::Writer<K>,
    listed: watch::Sender<bool>,
}

impl<K> Default for Reflected<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    fn default() -> Self {
        Self(RwLock::new((reflector::store().0, Listed::new().1)))
    }
}

impl<K> Reflected<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    /// A new, empty store for a run; its writer fills it.
    pub(crate) fn fresh(&self) -> ReflectedWriter<K> {
        let (reader, writer) = reflector::store();
        let (sender, listed) = Listed::new();
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = (reader, listed);
        ReflectedWriter {
            writer,
            listed: sender,
        }
    }

    fn current(&self) -> (Store<K>, Listed) {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The store of the current run (after [`Self::fresh`]).
    pub(crate) fn store(&self) -> Store<K> {
        self.current().0
    }

    /// Returns once the objects have been listed (`true`): before that, one that is not found
    /// may just not be known yet. `false`: this run's watch ended first.
    pub(crate) async fn ready(&self) -> bool {
        self.current().1.wait().await
    }

    /// The object `name` in `namespace`, if it exists.
    pub(crate) fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.current()
            .0
            .get(&ObjectRef::new(name).within(namespace))
    }
}

/// The watch of `K`, reflected into `writer`: yields an object when it is new, its spec changed
/// (a new `generation`) or it was deleted. Status writes pass nothing on.
pub(crate) fn spec_changes<K>(
    client: Client,
    namespace: Option<&str>,
    writer: ReflectedWriter<K>,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
    ObjectRef<K>: Hash + Eq,
{
    let mut seen: HashMap<ObjectRef<K>, Option<i64>> = HashMap::new();
    watcher(
        scoped_api::<K>(client, namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|obj| obj.managed_fields_mut().clear())
    .reflect(writer.writer)
    .filter_map(move |event| {
        let changed = match event {
            Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                let generation = obj.meta().generation;
                let previous = seen.insert(ObjectRef::from_obj(&obj), generation);
                (previous != Some(generation)).then_some(Ok(obj))
            }
            Ok(watcher::Event::Delete(obj)) => {
                seen.remove(&ObjectRef::from_obj(&obj));
                Some(Ok(obj))
            }
            Ok(watcher::Event::InitDone) => {
                writer.listed.send_replace(true);
                None
            }
            Ok(watcher::Event::Init) => None,
            Err(err) => Some(Err(err)),
        };
        std::future::ready(changed)
    })
}
