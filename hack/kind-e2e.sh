#!/usr/bin/env bash
# hack/kind-e2e.sh: ClusterResync end to end on a real Kubernetes cluster (kind).   make e2e
#
# *** NOT RUN HERE. This script was written with care but has NOT been run in this project's
# *** environment: the build machines have no Docker engine, so kind cannot start there. The
# *** tested end-to-end path is kubesim (make demo, make test). Expect to adjust details (versions,
# *** timeouts) on the first run on a machine with Docker; please report what you had to change.
#
# What it does:
#   1. creates a single-node kind cluster, with a kubeconfig of its own (yours is not touched);
#   2. installs the CSI snapshot CRDs and the snapshot-controller (kubernetes-csi/external-snapshotter),
#      then the CSI hostpath driver (kubernetes-csi/csi-driver-host-path), which supports
#      snapshots, with its StorageClass csi-hostpath-sc and VolumeSnapshotClass;
#   3. builds the operator image (./Dockerfile), loads it into kind, `kubectl apply -k manifests/`
#      and points the Deployment at that image;
#   4. deploys a 3-pod StatefulSet "db" on csi-hostpath-sc, writes primary data into db-1 and
#      stale data into db-0 and db-2 with kubectl exec, labels db-1 role=primary;
#   5. applies manifests/samples/clusterresync.yaml, waits for Completed and checks that
#      the replicas' files equal the primary's, that the primary is unchanged, that the old
#      volumes are retained and labelled, and that the temporary objects are gone;
#   6. deletes the cluster (unless KEEP_CLUSTER=1), also on failure, after printing diagnostics.
#
# Needs: docker (with a running engine), kind, kubectl, git, curl; network access to GitHub,
# registry.k8s.io and Docker Hub.
#
# Settings (environment variables):
#   CLUSTER_NAME         kind cluster name                   (clusterresync-e2e)
#   KIND_NODE_IMAGE      kind node image, e.g. kindest/node:v1.33.1   (kind's default)
#   SNAPSHOTTER_VERSION  external-snapshotter tag            (v8.2.0)
#   HOSTPATH_VERSION     csi-driver-host-path tag            (v1.15.0)
#   IMAGE                operator image to build and load    (clusterresync-operator:e2e)
#   WORKLOAD_IMAGE       image of the test StatefulSet       (busybox:1.36)
#   NS                   namespace of the test StatefulSet   (crs-e2e)
#   RESYNC_TIMEOUT       seconds to wait for the resync      (900)
#   KEEP_CLUSTER=1       keep the cluster afterwards (then: kind export kubeconfig --name ...)

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER_NAME="${CLUSTER_NAME:-clusterresync-e2e}"
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-}"
SNAPSHOTTER_VERSION="${SNAPSHOTTER_VERSION:-v8.2.0}"
HOSTPATH_VERSION="${HOSTPATH_VERSION:-v1.15.0}"
IMAGE="${IMAGE:-clusterresync-operator:e2e}"
WORKLOAD_IMAGE="${WORKLOAD_IMAGE:-busybox:1.36}"
NS="${NS:-crs-e2e}"
RESYNC_TIMEOUT="${RESYNC_TIMEOUT:-900}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"

OPERATOR_NS=clusterresync-system
RESYNC=db-resync                      # metadata.name in manifests/samples/clusterresync.yaml
STORAGE_CLASS=csi-hostpath-sc
DATA=/data                            # mountPath of volume "data" in the test StatefulSet

WORK="$(mktemp -d "${TMPDIR:-/tmp}/clusterresync-e2e.XXXXXX")"
export KUBECONFIG="$WORK/kubeconfig"
CREATED=0

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { printf '\033[31mFAIL: %s\033[0m\n' "$*" >&2; exit 1; }

diagnostics() {
  set +e
  say "diagnostics"
  kubectl get nodes -o wide
  kubectl -n "$NS" get crsync -o yaml
  kubectl -n "$NS" describe crsync
  kubectl -n "$NS" get pods,pvc,volumesnapshot,jobs -o wide
  kubectl get pv,volumesnapshotcontent,volumesnapshotclass,storageclass
  kubectl -n "$NS" get events --sort-by=.lastTimestamp | tail -n 60
  kubectl -n "$OPERATOR_NS" get pods -o wide
  kubectl -n "$OPERATOR_NS" logs deployment/clusterresync-operator --tail=300
  kubectl -n kube-system logs deployment/snapshot-controller --tail=100
  set -e
}

cleanup() {
  local rc=$?
  trap - EXIT
  if [[ $rc -ne 0 && $CREATED -eq 1 ]]; then
    diagnostics || true
  fi
  if [[ $CREATED -eq 1 ]]; then
    if [[ "$KEEP_CLUSTER" == 1 ]]; then
      say "keeping kind cluster $CLUSTER_NAME (kind export kubeconfig --name $CLUSTER_NAME; kind delete cluster --name $CLUSTER_NAME)"
    else
      say "deleting kind cluster $CLUSTER_NAME"
      kind delete cluster --name "$CLUSTER_NAME" || true
    fi
  fi
  rm -rf "$WORK"
  if [[ $rc -eq 0 ]]; then
    say "e2e PASSED"
  else
    printf '\033[31me2e FAILED (exit %s)\033[0m\n' "$rc" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT

# Poll "$@" until it succeeds, at most $1 seconds.   retry SECONDS DESCRIPTION CMD...
retry() {
  local timeout=$1 what=$2
  shift 2
  local end=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= end)); then
      die "timed out after ${timeout}s waiting for $what"
    fi
    sleep 3
  done
}

# The files under $DATA in a pod, one "sha256  ./path" line each, sorted by path.
files_of() {
  kubectl -n "$NS" exec "$1" -- sh -c "cd $DATA && find . -type f | sort | xargs -r sha256sum"
}

# -- 0. prerequisites ---------------------------------------------------------------------------
say "checking prerequisites"
for tool in docker kind kubectl git curl; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found in PATH"
done
docker info >/dev/null 2>&1 || die "docker is installed but its engine is not reachable (docker info failed)"
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
  die "a kind cluster named $CLUSTER_NAME exists already; delete it or set CLUSTER_NAME"
fi

# -- 1. the cluster -----------------------------------------------------------------------------
say "creating kind cluster $CLUSTER_NAME"
create_args=(create cluster --name "$CLUSTER_NAME" --kubeconfig "$KUBECONFIG" --wait 180s)
if [[ -n "$KIND_NODE_IMAGE" ]]; then
  create_args+=(--image "$KIND_NODE_IMAGE")
fi
CREATED=1
kind "${create_args[@]}"
kubectl get nodes -o wide

# -- 2. CSI snapshots and the hostpath driver ---------------------------------------------------
say "installing the CSI snapshot CRDs and snapshot-controller ($SNAPSHOTTER_VERSION)"
git clone --quiet --depth 1 --branch "$SNAPSHOTTER_VERSION" \
  https://github.com/kubernetes-csi/external-snapshotter "$WORK/external-snapshotter"
kubectl kustomize "$WORK/external-snapshotter/client/config/crd" | kubectl apply --server-side -f -
kubectl wait --for=condition=Established --timeout=120s \
  crd/volumesnapshotclasses.snapshot.storage.k8s.io \
  crd/volumesnapshots.snapshot.storage.k8s.io \
  crd/volumesnapshotcontents.snapshot.storage.k8s.io
kubectl kustomize "$WORK/external-snapshotter/deploy/kubernetes/snapshot-controller" |
  kubectl -n kube-system apply -f -
kubectl -n kube-system rollout status deployment/snapshot-controller --timeout=300s

say "installing the CSI hostpath driver ($HOSTPATH_VERSION)"
git clone --quiet --depth 1 --branch "$HOSTPATH_VERSION" \
  https://github.com/kubernetes-csi/csi-driver-host-path "$WORK/csi-driver-host-path"
# deploy.sh installs the driver's RBAC and components into the default namespace and waits for them.
"$WORK/csi-driver-host-path/deploy/kubernetes-latest/deploy.sh"
kubectl wait --for=condition=Ready pod -l app.kubernetes.io/name=csi-hostpathplugin --timeout=300s
kubectl apply -f "$WORK/csi-driver-host-path/examples/csi-storageclass.yaml"          # csi-hostpath-sc
kubectl apply -f "$WORK/csi-driver-host-path/examples/csi-volumesnapshotclass.yaml"   # csi-hostpath-snapclass
kubectl get csidriver,storageclass,volumesnapshotclass

# -- 3. the operator ----------------------------------------------------------------------------
say "building the operator image $IMAGE"
docker build -t "$IMAGE" "$ROOT"
kind load docker-image "$IMAGE" --name "$CLUSTER_NAME"

say "installing ClusterResync: kubectl apply -k manifests/"
kubectl apply -k "$ROOT/manifests"
kubectl wait --for=condition=Established --timeout=60s crd/clusterresyncs.clusterresync.io
# The manifests name the released image; run the one just built (tag not "latest", so IfNotPresent).
kubectl -n "$OPERATOR_NS" set image deployment/clusterresync-operator operator="$IMAGE"
kubectl -n "$OPERATOR_NS" rollout status deployment/clusterresync-operator --timeout=300s

# -- 4. a StatefulSet with data -----------------------------------------------------------------
say "deploying StatefulSet db (3 pods, $STORAGE_CLASS) in namespace $NS"
kubectl create namespace "$NS"
kubectl -n "$NS" apply -f - <<EOF
apiVersion: v1
kind: Service
metadata:
  name: db
spec:
  clusterIP: None
  selector:
    app: db
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  replicas: 3
  podManagementPolicy: Parallel
  selector:
    matchLabels:
      app: db
  template:
    metadata:
      labels:
        app: db
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: db
          image: $WORKLOAD_IMAGE
          imagePullPolicy: IfNotPresent
          command: [sh, -c, 'trap "exit 0" TERM; while true; do sleep 1; done']
          readinessProbe:
            exec:
              command: [test, -d, $DATA]
            periodSeconds: 2
          volumeMounts:
            - name: data
              mountPath: $DATA
  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: [ReadWriteOnce]
        storageClassName: $STORAGE_CLASS
        resources:
          requests:
            storage: 64Mi
EOF
kubectl -n "$NS" rollout status statefulset/db --timeout=300s

say "writing data: db-1 is the primary, db-0 and db-2 hold stale data"
for i in 0 1 2; do
  if [[ $i -eq 1 ]]; then content="PRIMARY: the latest committed data"; else content="STALE: replica $i drifted"; fi
  kubectl -n "$NS" exec "db-$i" -- sh -c "
    set -e
    mkdir -p $DATA/base
    echo '$content' > $DATA/base/state
    echo 'written by db-$i' > $DATA/only-on-db-$i
    dd if=/dev/urandom of=$DATA/base/blob bs=1024 count=256 2>/dev/null
    sync"
done
kubectl -n "$NS" label pod db-1 role=primary
primary_before="$(files_of db-1)"
[[ -n "$primary_before" ]] || die "no files on the primary"
for i in 0 2; do
  stale="$(files_of "db-$i")"
  [[ "$stale" != "$primary_before" ]] || die "db-$i already equals the primary before the resync"
done
old_pvs="$(kubectl -n "$NS" get pvc data-db-0 data-db-2 -o jsonpath='{.items[*].spec.volumeName}')"
primary_pv="$(kubectl -n "$NS" get pvc data-db-1 -o jsonpath='{.spec.volumeName}')"
primary_uid="$(kubectl -n "$NS" get pod db-1 -o jsonpath='{.metadata.uid}')"
echo "primary volume: $primary_pv; replicas' volumes before: $old_pvs"

# -- 5. the resync ------------------------------------------------------------------------------
say "applying manifests/samples/clusterresync.yaml"
kubectl -n "$NS" apply -f "$ROOT/manifests/samples/clusterresync.yaml"

end=$((SECONDS + RESYNC_TIMEOUT))
last=""
phase=""
while ((SECONDS < end)); do
  line="$(kubectl -n "$NS" get crsync "$RESYNC" \
    -o jsonpath='{.status.phase} {.status.progress} {range .status.replicas[*]}{.name}={.phase} {end}' 2>/dev/null || true)"
  if [[ "$line" != "$last" ]]; then
    printf '  %s  %s\n' "$(date +%H:%M:%S)" "$line"
    last="$line"
  fi
  phase="${line%% *}"
  if [[ "$phase" == Completed || "$phase" == Failed ]]; then
    break
  fi
  sleep 2
done
kubectl -n "$NS" get crsync
kubectl -n "$NS" get crsync "$RESYNC" \
  -o jsonpath='{range .status.conditions[*]}  {.type}={.status} {.reason}: {.message}{"\n"}{end}'
[[ "$phase" == Completed ]] || die "the resync ended as '${phase:-<no phase>}', not Completed"
reason="$(kubectl -n "$NS" get crsync "$RESYNC" -o jsonpath='{.status.conditions[?(@.type=="Complete")].reason}')"
[[ "$reason" == ResyncSucceeded ]] || die "Complete condition reason is '$reason', not ResyncSucceeded"

say "checking the replicas against the primary"
kubectl -n "$NS" rollout status statefulset/db --timeout=120s
for i in 0 2; do
  got="$(files_of "db-$i")"
  if [[ "$got" == "$primary_before" ]]; then
    echo "db-$i: EQUAL to the primary ($(wc -l <<<"$got") files)"
  else
    diff <(echo "$primary_before") <(echo "$got") || true
    die "db-$i differs from the primary"
  fi
done

say "checking the primary was not touched"
primary_after="$(files_of db-1)"
uid_after="$(kubectl -n "$NS" get pod db-1 -o jsonpath='{.metadata.uid}')"
pv_after="$(kubectl -n "$NS" get pvc data-db-1 -o jsonpath='{.spec.volumeName}')"
[[ "$primary_after" == "$primary_before" ]] || die "the primary's files changed"
[[ "$uid_after" == "$primary_uid" ]] || die "the primary pod was recreated"
[[ "$pv_after" == "$primary_pv" ]] || die "the primary's claim is bound to another volume"

say "checking the old volumes are retained (oldVolumes: Retain)"
kubectl get pv -l "clusterresync.io/resync=$RESYNC" -L clusterresync.io/replica,clusterresync.io/volume
for pv in $old_pvs; do
  got="$(kubectl get pv "$pv" -o jsonpath='{.status.phase}/{.spec.persistentVolumeReclaimPolicy}/{.metadata.labels.clusterresync\.io/resync}')"
  [[ "$got" == "Released/Retain/$RESYNC" ]] || die "old volume $pv is '$got', expected Released/Retain/$RESYNC"
done
for i in 0 2; do
  new_pv="$(kubectl -n "$NS" get pvc "data-db-$i" -o jsonpath='{.spec.volumeName}')"
  for pv in $old_pvs; do
    [[ "$new_pv" != "$pv" ]] || die "data-db-$i is still bound to its old volume $pv"
  done
done

say "checking the temporary objects are gone"
leftovers() {
  local out
  out="$(kubectl -n "$NS" get volumesnapshot,jobs,pvc -l "clusterresync.io/resync=$RESYNC" -o name)" || return 1
  [[ -z "$out" ]]
}
retry 120 "snapshots, staging Jobs and staging claims to be deleted" leftovers
kubectl -n "$NS" get volumesnapshot,jobs,pvc
