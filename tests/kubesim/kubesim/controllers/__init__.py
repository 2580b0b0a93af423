"""The controllers behind the API (kube-controller-manager and friends), one module per concern."""
