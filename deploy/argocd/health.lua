-- Argo CD health check for finetune.dev/FineTuneJob.
-- Install it under the argocd-cm key resource.customizations.health.finetune.dev_FineTuneJob
-- (see deploy/argocd/README.md). It uses no standard library, so useOpenLibs is not needed.
local hs = {}

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the finetune-operator to accept the job"
  return hs
end

-- A status written for an older spec does not describe the current one yet.
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the finetune-operator to observe generation " .. generation
  return hs
end

local phase = obj.status.phase
local message = obj.status.message
if message == nil then
  message = ""
end

if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = message
elseif phase == "Failed" then
  hs.status = "Degraded"
  if obj.status.reason ~= nil then
    hs.message = obj.status.reason .. ": " .. message
  else
    hs.message = message
  end
elseif phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = message
else
  hs.status = "Progressing"
  if phase == nil then
    hs.message = message
  else
    hs.message = phase .. ": " .. message
  end
  local progress = obj.status.progress
  if phase == "Training" and progress ~= nil and progress.percent ~= nil then
    hs.message = hs.message .. " (" .. progress.percent .. "%)"
  end
end
return hs
