package delivery

import (
	"context"
	"fmt"
	"sort"

	"github.com/twmb/franz-go/pkg/kadm"
)

// PartitionLag is how far a consumer group is behind on one partition.
type PartitionLag struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// End is the partition's end offset (the next offset to be written).
	End int64 `json:"end"`
	// Committed is the group's committed offset, -1 when it has none (the
	// group then starts at the partition's start offset).
	Committed int64 `json:"committed"`
	// Lag is End minus the committed offset (or the start offset).
	Lag int64 `json:"lag"`
}

// GroupLag returns group's lag on every partition of topics, sorted by
// topic and partition. A topic that does not exist (yet) is left out.
func GroupLag(ctx context.Context, adm *kadm.Client, group string, topics ...string) ([]PartitionLag, error) {
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %v: %w", topics, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list start offsets of %v: %w", topics, err)
	}
	committed, err := adm.FetchOffsetsForTopics(ctx, group, topics...)
	if err != nil {
		return nil, fmt.Errorf("fetch committed offsets of group %s: %w", group, err)
	}
	var out []PartitionLag
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			return
		}
		pl := PartitionLag{Topic: o.Topic, Partition: o.Partition, End: o.Offset, Committed: -1}
		from := int64(0)
		if s, ok := starts.Lookup(o.Topic, o.Partition); ok && s.Err == nil {
			from = s.Offset
		}
		if c, ok := committed.Lookup(o.Topic, o.Partition); ok && c.Err == nil && c.At >= 0 {
			pl.Committed = c.At
			from = c.At
		}
		pl.Lag = max(pl.End-from, 0)
		out = append(out, pl)
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	return out, nil
}
