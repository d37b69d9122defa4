// Package k8scheck checks the manifests of `jobhost kubernetes manifests`
// against the Kubernetes and KEDA Go API types, decoding them strictly. It
// is a module of its own so that the jobhost module needs no Kubernetes
// module: run `cd deploy/k8scheck && go test ./...`.
package k8scheck
