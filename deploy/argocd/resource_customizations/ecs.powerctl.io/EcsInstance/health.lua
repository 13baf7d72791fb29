-- Argo CD health of an EcsInstance, from the kstatus conditions the controller writes
-- (Ready, Reconciling, Stalled; each with observedGeneration). Lua 5.1 (gopher-lua).
local function condition(conditions, type)
  for _, c in ipairs(conditions) do
    if c.type == type then return c end
  end
  return nil
end

local function said(c)
  if c.message ~= nil and c.message ~= "" then return c.reason .. ": " .. c.message end
  return c.reason
end

local hs = {status = "Progressing", message = "Waiting for the controller to report a status"}
if obj.status == nil or obj.status.conditions == nil then return hs end
local generation = obj.metadata.generation
if generation ~= nil and obj.status.observedGeneration ~= generation then
  hs.message = "Waiting for the controller to observe generation " .. tostring(generation)
  return hs
end
local conditions = obj.status.conditions
local stalled = condition(conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  return {status = "Degraded", message = said(stalled)}
end
local ready = condition(conditions, "Ready")
if ready == nil then return hs end
if ready.status == "True" then
  return {status = "Healthy", message = ready.message}
end
-- spec.driftPolicy: Report, and the instance was started or stopped outside the controller,
-- which leaves it so: someone has to look.
if ready.reason == "Drifted" then
  return {status = "Degraded", message = said(ready)}
end
-- Paused by the ecs.powerctl.io/paused annotation, or spec.dryRun: never Ready, by design.
if ready.reason == "Paused" or ready.reason == "DryRun" then
  return {status = "Suspended", message = said(ready)}
end
return {status = "Progressing", message = said(ready)}
