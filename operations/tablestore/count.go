package tablestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/jobhost/jobhost/operations"
)

var _ operations.Counter = (*Store)(nil)

// countPage is how many entities one request of CountByStatus returns (the
// service's most).
const countPage = 1000

// CountByStatus returns how many unexpired records each status has, of
// function name ("" for all). Table Storage cannot count on the server:
// it pages through the matching entities projected on the Status column
// only, so each record costs a few bytes, not its input and output.
func (s *Store) CountByStatus(ctx context.Context, name string) (map[operations.Status]int, error) {
	out := map[operations.Status]int{}
	err := s.do(ctx, func() error {
		clear(out)
		f := filter(operations.Query{Name: name}, s.clock(), "")
		top, sel := int32(countPage), pStatus
		pager := s.client.NewListEntitiesPager(&aztables.ListEntitiesOptions{Filter: &f, Top: &top, Select: &sel})
		for pager.More() {
			resp, err := pager.NextPage(ctx)
			if err != nil {
				return err
			}
			for _, body := range resp.Entities {
				var e struct {
					Status *int `json:"Status"`
				}
				if err := json.Unmarshal(body, &e); err != nil || e.Status == nil {
					return fmt.Errorf("an entity without a readable %s property", pStatus)
				}
				out[operations.Status(*e.Status)]++
			}
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return nil, err
		}
		return nil, wrap("count", nil, err)
	}
	return out, nil
}
