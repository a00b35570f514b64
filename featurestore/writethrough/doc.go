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
// database write is conditional on the version it read.
//
// # Cache entries
//
// A cache key holds a VALUE (a committed version and its data, servable) or a DIRTY
// marker: the writer tokens in flight with their lease expiries, the newest committed
// (version, data) any writer has published, a horizon before which the entry may not turn
// back into a VALUE, and at most one reader's ticket. All times are the cache server's
// clock, so replicas' clock skew does not matter.
//
// # Update (MARK, COMMIT, PUBLISH)
//
//  1. MARK adds the writer's token with a lease to every key. A VALUE becomes DIRTY,
//     remembering it as the newest. A missing key (never cached, evicted, expired, or lost
//     in a flush or restart) may have lost the tokens of writers still in flight, so it
//     becomes DIRTY with a horizon one maximum lease away, and tokens added before the
//     horizon are "early": they cannot turn the key back into a VALUE. If MARK fails,
//     nothing was written (ErrNotWritten).
//  2. COMMIT reads the current items consistently, asks the mutation for the next ones,
//     and writes them conditionally on the versions read: one PutItem for one key, or
//     transactions of up to MaxGroupItems puts (and MaxGroupBytes) for many, falling back
//     to one key at a time for keys whose transaction lost a race. A lost race is retried
//     with a fresh read, a bounded number of times (ErrContention). The commit's deadline
//     counts from before MARK and is shorter than the lease, so no commit can land after
//     its writer's lease has ended. An SDK retry of a conditional put whose first attempt
//     applied fails its condition; when the stored item is not exactly ours, the outcome
//     is unknown (ErrOutcomeUnknown), never "lost the race".
//  3. PUBLISH removes the writer's token and records newest = max(marker's newest, own).
//     The key becomes a VALUE (the newest) only when the writer's own token was still
//     there, no other token remains (an expired one may belong to a writer that
//     committed and died), and the horizon has passed; otherwise it stays DIRTY. A
//     missing key stays missing. Every write publishes, even one whose mutation changed
//     nothing, so a retry repairs the cache. The last writer out therefore stores the
//     newest version, not its own: with two overlapping writers the first to commit may
//     publish last.
//  4. The write is acknowledged only after PUBLISH. If PUBLISH fails the item is durable,
//     the write answers ErrUnpublished (the caller cannot tell it succeeded), and a
//     background loop (Run) keeps publishing with backoff; until it succeeds, or the
//     lease ends, readers go to the database.
//
// # Read (GET, PREPARE, POPULATE)
//
// A read GETs every key in one pipelined round trip and serves VALUEs. For the rest it
// runs PREPARE, which grants a ticket only when no live token remains and the horizon
// has passed (a missing key is recreated DIRTY with a fresh horizon and gets none), then
// reads the database consistently in one wave of batched reads, and POPULATEs each
// ticketed key: the value is stored only if the ticket is still there (no MARK since
// PREPARE) or the entry holds an older VALUE, never over a missing key (whose state may
// have been lost since PREPARE). Expired tokens are dropped by PREPARE only: the
// database read that follows starts after their leases ended, so it sees whatever their
// writers committed. A read whose cache GET fails reads the database: reads need only
// the database; writes need both.
//
// # Why reads are linearizable
//
// While any writer that may still commit is in flight, its key is DIRTY: its own token
// is there, or, if the marker was lost, the recreated entry's horizon outlasts every
// lease granted before the loss. A DIRTY key is never served from the cache, so readers
// see the database, which holds every commit. A VALUE therefore equals the newest
// committed version whenever it is served, and POPULATE cannot store a version older than
// one a reader or writer has already exposed: its ticket dies with any MARK or loss, and
// it never goes below the newest recorded in the marker. A deleted item keeps its
// version as a fence: the cache stores an empty VALUE at the tombstone's version (with a
// short TTL that outlasts the longest read), so a reader that read the item before the
// delete cannot put it back.
//
// The cache must run as a cache: no RDB or AOF persistence, since a restart that brought
// back an old snapshot would serve values older than acknowledged writes.
package writethrough
