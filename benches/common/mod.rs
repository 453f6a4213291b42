//! The value both benchmarks cache: a typical ~100-byte DTO.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Widget {
    pub id: u64,
    pub owner_id: u64,
    pub name: String,
    pub sku: String,
    pub price_cents: u32,
    pub in_stock: bool,
    pub tags: Vec<String>,
}

pub fn widget(id: u64) -> Widget {
    Widget {
        id,
        owner_id: 42,
        name: "Left-handed spanner".into(),
        sku: "SP-000-LH".into(),
        price_cents: 1999,
        in_stock: true,
        tags: vec!["tools".into(), "metal".into()],
    }
}
