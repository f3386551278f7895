//! The event store contract, run against both backends: every test below is
//! instantiated once for Postgres and once for SQLite by `conformance!`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failure is a panic

mod append;
mod bulk;
mod harness;
mod projection;
mod subscription;

use harness::Harness;

/// Instantiates each named `async fn(Harness)` for both backends.
macro_rules! conformance {
    ($($module:ident :: $name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$module::$name(super::Harness::postgres().await).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$module::$name(super::Harness::sqlite().await).await;
                }
            )*
        }
    };
}

conformance!(
    append::appends_and_reads_back_streams_and_the_global_log,
    append::racing_writers_on_one_stream_exactly_one_wins,
    append::many_concurrent_appends_each_get_their_own_outcome,
    append::data_the_database_refuses_fails_only_its_own_append,
    append::bad_appends_return_typed_errors_and_write_nothing,
    append::events_cannot_be_updated_or_deleted,
    append::append_all_is_all_or_nothing_across_streams,
    bulk::bulk_loads_write_new_streams_in_order_and_refuse_existing_ones,
    bulk::snapshots_keep_the_latest_position_and_round_trip_large_data,
    subscription::concurrent_writers_and_a_live_subscriber_see_every_event_once_in_order,
    subscription::subscriptions_start_where_asked_and_refuse_unknown_positions,
    subscription::a_subscriber_in_another_process_is_woken_by_appends,
    projection::checkpoint_and_read_model_commit_together,
    projection::a_failed_batch_leaves_read_model_and_checkpoint_untouched,
    projection::rebuild_reproduces_the_incremental_read_model,
);
