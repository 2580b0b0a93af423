-- Argo CD health check for clusterresync.io/v1alpha1 ClusterResync (docs/gitops.md).
--
--   no status yet, or status.observedGeneration < metadata.generation   Progressing
--   condition Failed True                                                Degraded
--   condition Complete True                                              Healthy
--   spec.suspend true (waiting for approval)                             Suspended
--   anything else (Pending, Preflight, Snapshotting, Resyncing)          Progressing
--
-- Written for Argo CD's Lua (gopher-lua, Lua 5.1) without the standard string library, which
-- Argo CD does not open for scripts from argocd-cm: only base functions and `..` are used.
-- tests/unit/test_argocd_health.py runs it on statuses captured from real runs.

local hs = {}

local function condition(status, conditionType)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == conditionType then
      return c
    end
  end
  return nil
end

-- "Reason: message", as `kubectl get crsync -o wide` shows them.
local function describe(c)
  local reason = c.reason or ""
  local message = c.message or ""
  if reason == "" then
    return message
  end
  if message == "" then
    return reason
  end
  return reason .. ": " .. message
end

local generation = nil
if obj.metadata ~= nil then
  generation = tonumber(obj.metadata.generation)
end
local status = obj.status
local observed = nil
if status ~= nil then
  observed = tonumber(status.observedGeneration)
end

if observed == nil or (generation ~= nil and observed < generation) then
  hs.status = "Progressing"
  if generation ~= nil then
    hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  else
    hs.message = "Waiting for the operator to observe this ClusterResync"
  end
  if observed ~= nil then
    hs.message = hs.message .. " (the status describes generation " .. tostring(observed) .. ")"
  end
  return hs
end

local failed = condition(status, "Failed")
if failed ~= nil and failed.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(failed)
  return hs
end

local complete = condition(status, "Complete")
if complete ~= nil and complete.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(complete)
  return hs
end

-- A status with a final phase but without its condition: not written by the operator, but
-- reported as the phase says rather than as Progressing forever.
if status.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = "phase Failed"
  return hs
end
if status.phase == "Completed" then
  hs.status = "Healthy"
  hs.message = "phase Completed"
  return hs
end

local progressing = condition(status, "Progressing")

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  if progressing ~= nil and progressing.reason == "Suspended" then
    hs.message = describe(progressing)
  else
    hs.message = "spec.suspend: waiting for approval (set spec.suspend to false)"
  end
  return hs
end

hs.status = "Progressing"
local phase = status.phase or "Pending"
if status.progress ~= nil and status.progress ~= "" then
  phase = phase .. " " .. status.progress
end
if progressing ~= nil then
  hs.message = phase .. ": " .. describe(progressing)
else
  hs.message = phase
end
return hs
