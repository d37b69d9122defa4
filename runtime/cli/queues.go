package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue"
)

// queueRow is one row of `queues --output json`.
type queueRow struct {
	Name                string `json:"name"`
	ApproximateMessages int    `json:"approximateMessages"`
	Poison              bool   `json:"poison"`
	// Source is the queue a poison queue belongs to.
	Source string `json:"source,omitempty"`
}

const queuesHelp = `usage: %s queues [--connection NAME] [--output table|json]

Lists every Azure Storage Queue of the account with its approximate message
count. Poison queues (<queue>-poison) are marked and listed right after their
source queue. Storage Queues only: brokers (rabbit://, nats://, ...) have
their own tools; see "poison list --queue URL" for their poison messages.

flags:
`

// queues lists the Storage Queues of one account.
func (c *command) queues(ctx context.Context) int {
	var conn string
	if !c.parse(func(fs *flag.FlagSet) {
		fs.StringVar(&conn, "connection", azurequeue.DefaultConnection, "connection name (AzureWebJobs<NAME> or <NAME>, or identity-based <NAME>__queueServiceUri)")
		c.outputFlag(fs)
		fs.Usage = func() {
			fmt.Fprintf(fs.Output(), queuesHelp, "jobhost")
			fs.PrintDefaults()
		}
	}) {
		return ExitUsage
	}
	_, settings, ok := c.load()
	if !ok {
		return ExitUsage
	}
	svc, err := azurequeue.NewServiceClient(conn, settings.Lookup)
	if err != nil {
		fmt.Fprintf(c.Stderr, "jobhost queues: %s\n", redactText(err.Error()))
		return ExitUsage
	}
	var names []string
	pager := svc.NewListQueuesPager(nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			fmt.Fprintf(c.Stderr, "jobhost queues: list queues of %s: %s\n", azurequeue.Describe(conn, settings.Lookup), redactText(azureErr(err)))
			return ExitFailed
		}
		for _, q := range page.Queues {
			if q != nil && q.Name != nil {
				names = append(names, *q.Name)
			}
		}
	}
	rows := make([]queueRow, 0, len(names))
	for _, name := range names {
		n, err := azurequeue.New(svc, name, azurequeue.Options{}).ApproximateCount(ctx)
		if errors.Is(err, triggers.ErrNotFound) {
			continue // deleted since it was listed
		}
		if err != nil {
			fmt.Fprintf(c.Stderr, "jobhost queues: %s\n", redactText(err.Error()))
			return ExitFailed
		}
		r := queueRow{Name: name, ApproximateMessages: n}
		if src, ok := strings.CutSuffix(name, azurequeue.PoisonSuffix); ok && src != "" {
			r.Poison, r.Source = true, src
		}
		rows = append(rows, r)
	}
	// A poison queue sorts right after its source queue (even a missing one).
	key := func(r queueRow) (string, int) {
		if r.Poison {
			return r.Source, 1
		}
		return r.Name, 0
	}
	sort.Slice(rows, func(i, j int) bool {
		ki, pi := key(rows[i])
		kj, pj := key(rows[j])
		if ki != kj {
			return ki < kj
		}
		return pi < pj
	})
	if c.output == "json" {
		c.printJSON(rows)
		return ExitOK
	}
	if len(rows) == 0 {
		fmt.Fprintf(c.Stdout, "no queues in %s\n", azurequeue.Describe(conn, settings.Lookup))
		return ExitOK
	}
	tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "QUEUE\tMESSAGES\tPOISON")
	poisoned, queuesWith := 0, 0
	for _, r := range rows {
		mark := ""
		if r.Poison {
			mark = "poison of " + r.Source
			if r.ApproximateMessages > 0 {
				mark = "POISON of " + r.Source + " <=="
				poisoned += r.ApproximateMessages
				queuesWith++
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\n", r.Name, r.ApproximateMessages, mark)
	}
	_ = tw.Flush()
	if poisoned > 0 {
		fmt.Fprintf(c.Stdout, "\n%d poison message(s) in %d poison queue(s); look with: poison list --queue <source queue>\n", poisoned, queuesWith)
	}
	return ExitOK
}

// azureErr is a one-line description of an Azure SDK error (its full text
// spans many lines with the whole response).
func azureErr(err error) string {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return fmt.Sprintf("%s (HTTP %d)", re.ErrorCode, re.StatusCode)
	}
	return err.Error()
}
