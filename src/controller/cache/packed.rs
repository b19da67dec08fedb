//! Cached objects packed as their JSON bytes.
//!
//! The caches hold every child and pod the operator has ever seen, and nearly all of them belong
//! to finished jobs that are never read again. A deserialized object costs its struct's full
//! size whatever it holds: a `Pod` is 2.1 KiB inline with its spec gone, each container status
//! another 0.75 KiB, and every string and map its own allocation. The JSON of the same slimmed
//! object is a few hundred bytes in one allocation. It is decoded only when a reconcile of an
//! unfinished job reads it, which costs microseconds.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};

use kube::ResourceExt;
use kube::runtime::watcher;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::warn;

/// One object's JSON.
#[derive(Clone)]
pub struct Packed<K> {
    json: Box<[u8]>,
    kind: PhantomData<fn() -> K>,
}

impl<K: Serialize + DeserializeOwned> Packed<K> {
    /// None only if the object cannot be serialized, which a typed object always can.
    pub fn pack(object: &K) -> Option<Self> {
        let json = serde_json::to_vec(object)
            .inspect_err(|e| warn!(error = %e, "could not cache an object"))
            .ok()?;
        Some(Self {
            json: json.into_boxed_slice(),
            kind: PhantomData,
        })
    }

    /// None only if bytes this type wrote do not read back, which would be a bug: the reader
    /// then asks the apiserver, as for an object not cached.
    pub fn unpack(&self) -> Option<K> {
        serde_json::from_slice(&self.json)
            .inspect_err(|e| warn!(error = %e, "could not read a cached object"))
            .ok()
    }
}

/// Objects by namespace and name, kept from a watch: what a reflector store keeps, packed.
pub struct PackedStore<K> {
    inner: Arc<RwLock<State<K>>>,
}

impl<K> Clone for PackedStore<K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<K> Default for PackedStore<K> {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
        }
    }
}

type ByName<K> = HashMap<(String, String), Packed<K>>;

struct State<K> {
    objects: ByName<K>,
    /// The objects of a relist, swapped in when it completes (as a reflector does).
    relist: Option<ByName<K>>,
}

impl<K> Default for State<K> {
    fn default() -> Self {
        Self {
            objects: HashMap::new(),
            relist: None,
        }
    }
}

fn key_of<K: kube::Resource>(object: &K) -> (String, String) {
    (object.namespace().unwrap_or_default(), object.name_any())
}

impl<K> PackedStore<K>
where
    K: kube::Resource + Serialize + DeserializeOwned,
{
    /// Applies one watch event.
    pub fn apply(&self, event: &watcher::Event<K>) {
        let mut state = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            watcher::Event::Apply(object) => {
                if let Some(packed) = Packed::pack(object) {
                    state.objects.insert(key_of(object), packed);
                }
            }
            watcher::Event::Delete(object) => {
                state.objects.remove(&key_of(object));
            }
            watcher::Event::Init => state.relist = Some(HashMap::new()),
            watcher::Event::InitApply(object) => {
                if let (Some(packed), Some(relist)) = (Packed::pack(object), state.relist.as_mut())
                {
                    relist.insert(key_of(object), packed);
                }
            }
            watcher::Event::InitDone => {
                if let Some(relist) = state.relist.take() {
                    state.objects = relist;
                }
            }
        }
    }

    /// Every object, unpacked.
    pub fn all(&self) -> Vec<K> {
        let state = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.objects.values().filter_map(Packed::unpack).collect()
    }

    /// Forgets one object (and drops it from a relist in progress).
    pub fn remove(&self, ns: &str, name: &str) {
        let mut state = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (ns.to_string(), name.to_string());
        state.objects.remove(&key);
        if let Some(relist) = state.relist.as_mut() {
            relist.remove(&key);
        }
    }

    pub fn get(&self, ns: &str, name: &str) -> Option<K> {
        let state = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state
            .objects
            .get(&(ns.to_string(), name.to_string()))?
            .unpack()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PyTorchJob;
    use crate::children::Child;
    use serde_json::json;

    fn ptj(name: &str, condition: &str) -> PyTorchJob {
        serde_json::from_value(json!({
            "apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
            "metadata": {"name": name, "namespace": "ns", "uid": "u"},
            "spec": {"pytorchReplicaSpecs": {}, "runPolicy": {"suspend": false}},
            "status": {"conditions": [{"type": condition, "status": "True"}]}}))
        .unwrap()
    }

    #[test]
    fn a_packed_store_keeps_what_a_reflector_keeps() {
        let store = PackedStore::<PyTorchJob>::default();
        store.apply(&watcher::Event::Apply(ptj("a", "Created")));
        assert!(store.get("ns", "a").unwrap().condition("Created"));
        store.apply(&watcher::Event::Apply(ptj("a", "Running")));
        let a = store.get("ns", "a").unwrap();
        assert!(a.condition("Running"));
        assert_eq!(a, ptj("a", "Running"), "what was packed reads back whole");
        assert!(store.get("other", "a").is_none());
        // A relist replaces everything, once it is complete.
        store.apply(&watcher::Event::Init);
        store.apply(&watcher::Event::InitApply(ptj("b", "Created")));
        assert!(
            store.get("ns", "a").is_some(),
            "the old objects until the relist is done"
        );
        store.apply(&watcher::Event::InitDone);
        assert!(store.get("ns", "a").is_none());
        assert!(store.get("ns", "b").is_some());
        store.apply(&watcher::Event::Delete(ptj("b", "Created")));
        assert!(store.get("ns", "b").is_none());
    }
}
