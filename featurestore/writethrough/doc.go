// Package writethrough keeps a cache consistent with a database for items addressed by
// key, so that reads through it are linearizable per key, also when the cache fails,
// restarts, evicts or races. It knows nothing about features: callers hand it keys and
// pure functions that map each key's current item to its next one. The database
// (DynamoDB) is the source of truth; the cache (ValKey) holds one envelope per key.
// This comment is the protocol's one description; README points here.
//
// # Items and versions
//
// An Item has a Version that increases with every successful write and never goes
// backwards, also across deletion: a write stores max(previous + 1, now in microseconds),
// and a deleted item is replaced by a tombstone (no data) at a higher version. Every
// database write is conditional on the version it read, so versions are ordered as the
// puts landed.
//
// # Cache entries
//
// A cache key holds a VALUE (a committed version and its data, servable) or a DIRTY
// marker: the writer tokens in flight with their lease expiries, the newest committed
// (version, data) anyone recorded, a horizon, and a generation that names the entry's
// state for readers (any MARK, loss, unserving record or cleared horizon gives it a new
// one; a record that only raises a DIRTY entry's newest keeps it, which is safe because
// whoever stores under it stores that newest).
// A DIRTY marker whose generation says "provisional" is servable, as a VALUE of its
// newest, until half a horizon after its horizon. All times are the cache server's
// clock; Get judges a provisional entry's horizon by bounds of that clock taken from a
// TIME sample, never by the reader's own clock.
//
// # Update (MARK, COMMIT, PUBLISH)
//
//  1. MARK adds the writer's token with a lease to every key. A VALUE becomes DIRTY,
//     remembering it as the newest. A missing key (never cached, evicted, expired, or lost
//     in a flush or restart) may have lost the tokens of writers still in flight, so it
//     becomes DIRTY with a horizon Config.Horizon away, and tokens added before the
//     horizon are "early". If MARK fails, nothing was written (ErrNotWritten).
//  2. COMMIT reads the current items consistently, asks the mutation for the next ones,
//     and writes them conditionally on the versions read: one PutItem for one key, or
//     transactions of up to MaxGroupItems puts (and MaxGroupBytes) for many, falling back
//     to one key at a time for keys whose transaction lost a race. A lost race is retried
//     with a fresh read, a bounded number of times (ErrContention). The commit's deadline
//     counts from before MARK and is shorter than the lease. An SDK retry of a conditional
//     put whose first attempt applied fails its condition; when the stored item is not
//     exactly ours, the outcome is unknown (ErrOutcomeUnknown), never "lost the race".
//     Before each put (each transaction) ASSERT checks that the writer's token is still
//     on its keys and, where the entry was lost since, adds it back as MARK would (early,
//     with a new generation). The put must land within Config.PutWindow of the moment
//     before that ASSERT, or it is abandoned (ErrOutcomeUnknown, ErrPutWindow); the
//     horizon is the put window plus a margin for a put the database applies after its
//     caller gave up. If ASSERT fails, nothing is put (ErrNotWritten).
//  3. PUBLISH removes the writer's token and records newest = max(marker's newest, own).
//     A writer whose own token was still there, with no other token left (an expired one
//     may belong to a writer that committed and died), makes the key servable: a VALUE of
//     the newest if its token was not early, a provisional entry if it was and the
//     horizon is still ahead; otherwise the key stays DIRTY. A writer whose token is gone
//     and whose version is newer than a servable entry makes it DIRTY. A missing key is
//     recreated DIRTY with the writer's version as its newest. Every write publishes, even one whose mutation changed nothing, so a retry
//     repairs the cache. The last writer out therefore stores the newest version, not its
//     own: with two overlapping writers the first to commit may publish last.
//  4. The write is acknowledged only after PUBLISH. If PUBLISH fails the item is durable,
//     the write answers ErrUnpublished (the caller cannot tell it succeeded), and a
//     background loop (Run) keeps publishing with backoff; until it succeeds, or the
//     lease ends, readers go to the database. (A writer whose token a loss took may find
//     a provisional entry from before its put: it stays served, until a reader records
//     the write, the repair publishes it, or the entry ends. The write was not
//     acknowledged, so reads of the older version until then are linearizable.)
//
// # Read (GET, PREPARE, database read, RECORD)
//
// A read GETs every key in one pipelined round trip and serves what is servable. For the
// rest it runs PREPARE, reads the database consistently, and runs RECORD for every key it
// read before it answers. PREPARE grants a ticket (the entry's generation), or none:
//
//   - none while a live token remains, and none on a provisional entry before its horizon
//     (nothing to heal);
//   - on a missing key, which it recreates DIRTY with a horizon, a ticket at once;
//   - once a horizon has passed, a provisional entry's own name (a renewal), and any other
//     entry a new generation with the horizon cleared;
//   - otherwise the entry's generation, which every reader of it shares.
//
// RECORD raises the entry's newest to the version read (a servable entry older than it
// becomes DIRTY). Under a ticket that still names the entry's generation (no MARK, loss
// or newer record since PREPARE) it then stores the newest: a VALUE if the horizon was
// clear when the ticket was granted, a provisional entry while the horizon is ahead, and
// nothing once a horizon that was ahead has passed. A renewal stores a provisional entry
// for good, if nothing newer was recorded. A missing key is recreated DIRTY, with the
// version read as its newest and a horizon, never servable. Run renews
// provisional entries that readers are served past their horizon, so a cache loss costs
// each hot key one miss, not two. When a replica finds many keys it served recently
// missing at once (Config.HealTogether), Run also reads the others that are still missing
// ahead of their readers, in one batch. Renewals and these heals are reads like any
// other, claimed as a reader claims keys, through PREPARE and RECORD, whose answers only
// the cache keeps; nothing below depends on who made a read.
//
// A read whose RECORD fails (the cache is down, or unreachable from this replica) waits
// until one and a half horizons have passed since its database read returned, retrying
// RECORD meanwhile, and only then answers; its context may end first (ErrUnavailable).
// Reads need only the database, but without the cache they pay that wait.
//
// Expired tokens are dropped by PREPARE only: the database read that follows starts after
// their leases ended, so it sees whatever their writers committed. The database reads of
// one replica's readers are shared: up to Config.ReadFlights run at once, and a reader
// that finds them all busy joins the next one, which starts after it arrived. Reads of one
// key on one replica coalesce: a reader that finds another read of this replica between
// PREPARE and RECORD on a key waits for it. It answers with that read's item if the
// database read began after the reader arrived, or if RECORD, sent after the reader
// arrived, reported that it left the entry servable at exactly the item's version (the
// entry's state right after the script, which RECORD sees atomically). Otherwise it
// GETs the key again, serving it if it is servable, and goes on itself if not (a bounded
// number of times). So no reader is answered from a database read that began before it
// did, except as a GET at a moment within its own read would have answered it.
//
// # Why reads are linearizable
//
// A reader that answers from its own database read is linearizable at that read, and
// so is one that shares a database read that began after it arrived. A reader that
// shares an item RECORD reported servable answers what a GET would have served at the
// moment RECORD ran, which came after the reader arrived and before it answered: it is
// linearizable as a reader served from the cache then. (Replicated caches: the WAIT
// after that RECORD returned before the reader answers, as for RECORD's own reader.)
// What needs proof is that a servable entry never holds a version older than one exposed
// before the read that serves it began (acknowledged by a writer, or returned by a
// reader). Three facts carry it.
//
// Lost writers end at the horizon. Call a writer lost for an entry if one of its puts can
// land while its token is not in the entry. Tokens leave an entry by their writer's
// PUBLISH (after its puts), by PREPARE once expired (after every put of theirs, since the
// commit's deadline is shorter than the lease), or by a loss. Each put follows an ASSERT
// that found or restored its token, so a lost writer's put follows an ASSERT made before
// the loss and lands within the put window of it: before the horizon of any entry
// recreated after that loss. After an entry's horizon, every put that can land on its key
// belongs to a writer whose token is in it.
//
// VALUEs are exact. A VALUE is stored by a non-early writer's PUBLISH (its token added
// after any horizon, no other token left), by RECORD under a ticket granted with no
// horizon ahead, or by a renewal granted after the horizon. In each case every version
// committed before the store is at most the value's: a newer put would come from a writer
// whose token was in the entry, which either is still there (no store), published (and
// raised the newest), or, for RECORD, was added after the ticket (a new generation voids
// it) or expired before it (its puts landed before the database read). While a VALUE
// stands, no put can land: a writer MARKs first (the key becomes DIRTY), and no lost
// writer remains past the horizon. A VALUE is therefore the newest committed version
// whenever it is served.
//
// Provisional entries are never behind what was exposed. A provisional entry is stored
// after the loss that recreated its entry, from a database read made after that, so it
// holds every version committed before. Only a lost writer can commit a newer one before
// the horizon, and its version is exposed in one of three ways: by its own
// acknowledgement, after a PUBLISH that raises the newest or makes the entry DIRTY; by a
// reader that recorded it first, which does the same; or by a read the cache could not
// record, which answers one and a half horizons after its database read, itself after the
// put and so after the entry's recreation: the entry is no longer served by then. Writers
// that are not lost hold a token, which makes the entry DIRTY before they put.
//
// Get serves a provisional entry only while an upper bound of the clock of the node that
// holds it is before its end. The bound comes from a TIME sample taken on that node for
// the key's slot (at most the sample plus the time since it was sent), so only that
// node's clock must run steadily; the wait of a read the cache could not record is
// measured on the reader's own monotonic clock, with a little slack.
// The chaos harness shows the checker finds the violations when populates are plain
// SETs, when the last writer out stores its own version, and when a replicated cache does
// not WAIT (TestMutationsAreCaught), and, with scripted interleavings, when readers do
// not record, when writers do not ASSERT, and when waiters take an item RECORD did not
// leave servable (TestNoRecordIsCaught, TestNoAssertIsCaught, TestShareUnservedIsCaught).
//
// A deleted item keeps its version as a fence of its own: the cache stores an empty
// VALUE at the tombstone's version (with a short TTL that outlasts the longest read), so
// a reader that read the item before the delete cannot put it back.
//
// The cache must run as a cache: no RDB or AOF persistence, since a restart that brought
// back an old snapshot would serve values older than acknowledged writes.
//
// # Replicated caches
//
// A replica promoted after a failover holds what it had received, which may be older
// than what its primary held. The argument above survives that if the promoted replica
// never holds a servable entry older than one the primary served or a reader recorded.
// With valkey.Options.Replicas set, MARK, ASSERT, PUBLISH, PREPARE and RECORD answer only
// after WAIT (each writes the entry, also when nothing changes, and recreates a lost one;
// a primary replicates in one ordered stream, so the WAIT covers what they saw, including
// the eviction or flush that lost an entry). No servable entry changes version in place: a newer
// version first makes it DIRTY. A new servable entry is stored only on a state a WAIT
// covered (the MARK before its writer's PUBLISH, the PREPARE before a reader's RECORD),
// so a promoted replica holds that non-servable state, or the servable entry itself. And
// every record a reader answered after reached the replica. With several replicas per
// primary, WAIT must cover the one that will be promoted: set Replicas to the number each
// primary has. Leases and horizons are written in the old primary's clock and judged by
// the new one's, so with replicas the clocks of ValKey nodes must agree to within the
// margins (NTP keeps them within milliseconds); a single node needs only a steady clock.
package writethrough
