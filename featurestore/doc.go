// Package featurestore is the domain of the online feature store: feature sets and their
// schema evolution, rows of feature values merged by event time, the registry, and the
// write-through coordinator and read path that keep DynamoDB (the source of truth) and
// ValKey (a cache) consistent.
//
// Storage lives beneath this package: featurestore/dynamo implements Store and
// featurestore/valkey implements Cache. This package declares only the small interfaces it
// consumes, so it can be tested against fakes and wired against the real stores in cmd.
//
// # Consistency
//
// Every key (one feature set and one entity, or one registry entry) follows the same
// protocol. A write MARKs the cache key with a leased writer token, COMMITs to DynamoDB
// with a conditional write on the item's version, then PUBLISHes the committed version;
// it is acknowledged only after PUBLISH. A read serves a cached VALUE, and otherwise
// reads DynamoDB consistently, repopulating the cache only when the cache's own state
// proves that no write it does not know about can be in flight (see Cache). Reads are
// therefore linearizable per key, also when the cache evicts, restarts or loses a writer.
package featurestore
