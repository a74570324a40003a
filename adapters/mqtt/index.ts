export { MqttAdapter, buildClientOptions, subscriptionFilters, type MqttAdapterDeps, type MqttStats } from './mqtt-adapter.js'
export { decodePayload, topicDeviceId, topicMatches, type PayloadContext } from './payload.js'
