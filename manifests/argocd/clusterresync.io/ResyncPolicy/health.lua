-- Argo CD health check for clusterresync.io/v1alpha1 ResyncPolicy (docs/gitops.md).
--
--   no status yet, or the status describes an older generation          Progressing
--   spec.suspend true                                                    Suspended
--   condition Drifted True                                               Degraded
--   condition InSync True                                                Healthy
--   InSync Unknown: ProbeInvalid, PrimaryRoleMismatch (a person must act) Degraded
--   InSync Unknown: any other reason (ProbeUnknown, TargetNotFound,
--     PrimaryNotFound, NoPrimary, MultiplePrimaries: the next probe may tell)  Progressing
--   InSync False                                                         Degraded
--   not probed yet                                                       Progressing
--
-- The generation the status describes is status.observedGeneration when the operator writes it,
-- else the newest observedGeneration of the conditions (each condition carries the generation it
-- was written for).
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
  if observed == nil and status.conditions ~= nil then
    for _, c in ipairs(status.conditions) do
      local g = tonumber(c.observedGeneration)
      if g ~= nil and (observed == nil or g > observed) then
        observed = g
      end
    end
  end
end

if observed == nil or (generation ~= nil and observed < generation) then
  hs.status = "Progressing"
  if generation ~= nil then
    hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  else
    hs.message = "Waiting for the operator to observe this ResyncPolicy"
  end
  if observed ~= nil then
    hs.message = hs.message .. " (the status describes generation " .. tostring(observed) .. ")"
  end
  return hs
end

local suppressed = condition(status, "RemediationSuppressed")

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  if suppressed ~= nil and suppressed.reason == "Suspended" then
    hs.message = describe(suppressed)
  else
    hs.message = "spec.suspend: no probes, no remediation"
  end
  return hs
end

-- "1/2 in sync" when the policy has counted them.
local function counted(text)
  if status.inSync ~= nil and status.inSync ~= "" then
    return status.inSync .. " in sync; " .. text
  end
  return text
end

local drifted = condition(status, "Drifted")
if drifted ~= nil and drifted.status == "True" then
  hs.status = "Degraded"
  hs.message = counted(describe(drifted))
  if suppressed ~= nil and suppressed.reason ~= nil then
    hs.message = hs.message .. "; remediation: " .. describe(suppressed)
  end
  return hs
end

local inSync = condition(status, "InSync")
if inSync ~= nil and inSync.status == "True" then
  hs.status = "Healthy"
  hs.message = counted(describe(inSync))
  return hs
end

if inSync ~= nil and inSync.status == "Unknown" then
  if inSync.reason == "ProbeInvalid" or inSync.reason == "PrimaryRoleMismatch" then
    hs.status = "Degraded"
  else
    hs.status = "Progressing"
  end
  hs.message = describe(inSync)
  return hs
end

if inSync ~= nil and inSync.status == "False" then
  hs.status = "Degraded"
  hs.message = counted(describe(inSync))
  return hs
end

hs.status = "Progressing"
hs.message = "Not probed yet"
return hs
