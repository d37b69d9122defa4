// Package orders is one function that runs unchanged on Azure Storage
// Queues (Azurite), RabbitMQ or NATS JetStream: the app setting
// OrdersSubscription picks the broker.
//
//	OrdersSubscription=orders                       an Azure Storage Queue
//	OrdersSubscription=rabbit://orders              a RabbitMQ queue
//	OrdersSubscription=nats://orders?stream=ORDERS  a JetStream stream
package orders

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
)

// Setting names the app setting holding the trigger.
const Setting = "OrdersSubscription"

// Order is the message.
type Order struct {
	ID       string  `json:"id"`
	Customer string  `json:"customer"`
	Total    float64 `json:"total"`
}

func init() { Register(functions.Default) }

// Register adds ProcessOrder to r, bound to %OrdersSubscription% (default
// the Storage Queue "orders").
func Register(r *functions.Registry) {
	r.SettingDefault(Setting, "orders")
	functions.Add(r, "ProcessOrder", functions.SubscriptionTrigger("%"+Setting+"%"), ProcessOrder)
}

// ProcessOrder books an order. An order without an id or with a negative
// total is refused (retried, then poisoned).
func ProcessOrder(ctx context.Context, o Order, msg *triggers.Message) error {
	if o.ID == "" {
		return errors.New("order has no id")
	}
	if o.Total < 0 {
		return fmt.Errorf("order %s has a negative total %.2f", o.ID, o.Total)
	}
	functions.Logger(ctx).Info("order booked", zap.String("order", o.ID), zap.String("customer", o.Customer),
		zap.Float64("total", o.Total), zap.String("source", msg.Source), zap.Int64("attempt", msg.DequeueCount))
	return nil
}
