package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/anishathalye/porcupine"
)

// check checks each key's history with porcupine and counts the outcome in rep.
func check(history []op, cfg Config, rep *Report) {
	ops := make([]porcupine.Operation, len(history))
	for i, o := range history {
		ops[i] = porcupine.Operation{ClientId: o.Client, Input: o.Input, Output: o.Output, Call: o.Call, Return: o.Return, Metadata: o.Key}
		switch out := o.Output.(type) {
		case writeOut:
			rep.Writes++
			if out.Status == "unknown" {
				rep.Unknown++
			}
		case deleteOut:
			rep.Deletes++
			if out.Unknown {
				rep.Unknown++
			}
		default:
			rep.Reads++
		}
	}
	rep.Operations = len(ops)
	for _, part := range model.Partition(ops) {
		rep.Histories++
		res, info := porcupine.CheckOperationsVerbose(porcupine.Model{
			Init: model.Init, Step: model.Step, Hash: model.Hash, DescribeOperation: model.DescribeOperation,
			DescribeState: model.DescribeState, DescribeOperationMetadata: model.DescribeOperationMetadata,
		}, part, time.Minute)
		switch res {
		case porcupine.Illegal:
			rep.Violations++
			if err := os.MkdirAll(cfg.OutDir, 0o755); err == nil {
				path := filepath.Join(cfg.OutDir, fmt.Sprintf("violation-seed%d-%s.html", cfg.Seed, part[0].Metadata))
				if err := porcupine.VisualizePath(model, info, path); err == nil {
					rep.Visualizations = append(rep.Visualizations, path)
				}
			}
		case porcupine.Unknown:
			rep.Inconclusive++
			if cfg.Progress != nil {
				fmt.Fprintf(cfg.Progress, "seed %d: key %v inconclusive: the check of its %d operations timed out\n", cfg.Seed, part[0].Metadata, len(part))
			}
		}
	}
}
