//! Catalog use cases.

use berth_domain::catalog::{CatalogCommand, CatalogDefinition};
use berth_domain::CatalogEntryId;
use cqrs_es::persist::PersistedEventRepository;
use uuid::Uuid;

use crate::commands::CommandBus;
use crate::error::AppError;
use crate::metadata::CommandMetadata;
use crate::receipt::Receipt;

/// Namespace of the deterministic ids of predefined entries (UUIDv5 of their name), so
/// every replica and every restart registers the same entry under the same id.
const PREDEFINED_NAMESPACE: Uuid = Uuid::from_u128(0x6265_7274_682d_6361_7461_6c6f_6700_0001);

/// The id a predefined entry called `name` always has.
pub fn predefined_id(name: &str) -> Uuid {
    Uuid::new_v5(&PREDEFINED_NAMESPACE, name.as_bytes())
}

impl<R: PersistedEventRepository + Clone> CommandBus<R> {
    /// Adds a custom catalog entry owned by the caller.
    #[tracing::instrument(skip_all, fields(name = %definition.name))]
    pub async fn register_catalog_entry(
        &self,
        metadata: &CommandMetadata,
        definition: CatalogDefinition,
    ) -> Result<(CatalogEntryId, Receipt), AppError> {
        let id = CatalogEntryId::from_uuid(Uuid::now_v7());
        let command = CatalogCommand::Register {
            owner: metadata.actor.owner_id(),
            definition,
        };
        let receipt = self.catalog(id, command, metadata).await?;
        Ok((id, receipt))
    }

    /// Replaces what an entry says.
    #[tracing::instrument(skip_all, fields(catalog_id = %id))]
    pub async fn update_catalog_entry(
        &self,
        metadata: &CommandMetadata,
        id: CatalogEntryId,
        definition: CatalogDefinition,
    ) -> Result<Receipt, AppError> {
        self.catalog(id, CatalogCommand::Update { definition }, metadata)
            .await
    }

    /// Removes a custom entry.
    #[tracing::instrument(skip_all, fields(catalog_id = %id))]
    pub async fn remove_catalog_entry(
        &self,
        metadata: &CommandMetadata,
        id: CatalogEntryId,
    ) -> Result<Receipt, AppError> {
        self.catalog(id, CatalogCommand::Remove, metadata).await
    }

    /// Makes the store's predefined entries say what the shipped catalog says. Unchanged
    /// entries produce no events. Returns how many entries changed.
    #[tracing::instrument(skip_all)]
    pub async fn sync_predefined_catalog(
        &self,
        metadata: &CommandMetadata,
        definitions: Vec<CatalogDefinition>,
    ) -> Result<usize, AppError> {
        let mut changed = 0;
        for definition in definitions {
            let id = predefined_id(&definition.name);
            let receipt = self
                .catalog(
                    id.into(),
                    CatalogCommand::SyncPredefined { definition },
                    metadata,
                )
                .await?;
            if receipt.position.is_some() {
                changed += 1;
            }
        }
        Ok(changed)
    }
}
