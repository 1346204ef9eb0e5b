//! Wire contracts shared by the sample services and the gateways, generated once from
//! `shared/proto/*.proto`. Both sides depend on this crate the way they would on a published
//! client library; neither depends on the other.

pub mod money;

/// `portico.inventory.v1`: stock per SKU and warehouse (gRPC).
pub mod inventory {
    #![allow(missing_docs, unused_qualifications, clippy::all, clippy::pedantic)]
    tonic::include_proto!("portico.inventory.v1");
}
