//! The host's side of `/biop2p/role/1.0.0`: answers for Young's tables
//! ([`super::tables`]) and its own role and Caste thresholds. Every request
//! costs the peer one fetch token first (the per-peer quota every non-job
//! request pays); a published table's signature is checked off the loop.

use libp2p::Swarm;
use libp2p::request_response::{self, ResponseChannel};

use super::{Host, tables, unix_now_ms};
use crate::net::{Behaviour, Inbound};
use crate::proto::{RoleRequest, RoleResponse};
use security::settlement::Party;

type Channel = ResponseChannel<RoleResponse>;

fn refused(reason: &str, detail: String) -> RoleResponse {
    RoleResponse::Refused {
        reason: reason.into(),
        detail,
    }
}

impl Host {
    pub(super) fn on_role_event(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        e: request_response::Event<Inbound<RoleRequest>, RoleResponse>,
    ) {
        let request_response::Event::Message {
            peer,
            message:
                request_response::Message::Request {
                    request, channel, ..
                },
            ..
        } = e
        else {
            if let request_response::Event::InboundFailure { peer, error, .. } = e {
                tracing::debug!(%peer, %error, "inbound role request failed");
            }
            return;
        };
        if let Err((reason, why)) = self.quotas.admit_fetch(&peer, std::time::Instant::now()) {
            return answer(swarm, channel, refused(reason.as_str(), why));
        }
        match request {
            Inbound::TooLarge { len, limit } => answer(
                swarm,
                channel,
                refused(
                    "too_large",
                    format!("request of {len} bytes is over the limit of {limit}"),
                ),
            ),
            Inbound::Malformed(why) => answer(swarm, channel, refused("malformed", why)),
            Inbound::Ok(RoleRequest::Tables) => {
                let ledger = &self.ledger;
                let tables = self
                    .tables
                    .answer(unix_now_ms(), |k| ledger.account(&Party(*k)).entries);
                let (role, thresholds) = self.advertiser.role_and_thresholds();
                answer(
                    swarm,
                    channel,
                    RoleResponse::Tables {
                        role,
                        thresholds,
                        tables,
                    },
                )
            }
            Inbound::Ok(RoleRequest::Publish { table }) => {
                let started = self
                    .table_checks
                    .start((channel, table), move |(reply, table)| {
                        let outcome = tables::check(&table, unix_now_ms());
                        tables::Checked {
                            sender: peer,
                            reply,
                            table,
                            outcome,
                        }
                    });
                if let Err((channel, _)) = started {
                    answer(
                        swarm,
                        channel,
                        refused(
                            "busy",
                            "this host is checking other tables; publish again later".into(),
                        ),
                    )
                }
            }
        }
    }

    /// A published table came back from its check: carried, or refused
    /// with the check's reason.
    pub(super) fn on_table_checked(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        c: tables::Checked<Channel>,
    ) {
        let resp = match c.outcome {
            Ok(body) => {
                let ledger = &self.ledger;
                let paid = |k: &[u8; 32]| ledger.account(&Party(*k)).entries > 0;
                let new = self.tables.keep(c.sender, c.table, &body, paid);
                tracing::info!(peer = %c.sender, new, carried = self.tables.len(), "Young table published");
                RoleResponse::Kept { new }
            }
            Err((reason, detail)) => {
                tracing::info!(peer = %c.sender, reason, %detail, "Young table refused");
                refused(reason, detail)
            }
        };
        answer(swarm, c.reply, resp)
    }
}

fn answer(swarm: &mut Swarm<Behaviour>, ch: Channel, resp: RoleResponse) {
    let _ = swarm.behaviour_mut().role.send_response(ch, resp);
}
