-- Argo CD health of an EcsPowerSchedule, from the conditions the controller writes (Ready with
-- reason ScheduleValid, or Stalled with reason ScheduleInvalid naming the field). Lua 5.1.
local function condition(conditions, type)
  for _, c in ipairs(conditions) do
    if c.type == type then return c end
  end
  return nil
end

local hs = {status = "Progressing", message = "Waiting for the controller to report a status"}
if obj.status == nil or obj.status.conditions == nil then return hs end
local generation = obj.metadata.generation
if generation ~= nil and obj.status.observedGeneration ~= generation then
  hs.message = "Waiting for the controller to observe generation " .. tostring(generation)
  return hs
end
local stalled = condition(obj.status.conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  return {status = "Degraded", message = stalled.reason .. ": " .. (stalled.message or "")}
end
local ready = condition(obj.status.conditions, "Ready")
if ready ~= nil and ready.status == "True" then
  return {status = "Healthy", message = ready.message}
end
return hs
