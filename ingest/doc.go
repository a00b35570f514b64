// Package ingest will hold the streaming and batch write lanes (per-key ordering, bounded
// parallelism, summaries) and the file readers behind `fsctl import`. Not built yet: the
// StreamWriteFeatures and BatchWriteFeatures RPCs answer Unimplemented until it is.
package ingest
