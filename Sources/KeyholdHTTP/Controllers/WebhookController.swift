import Foundation
import Hummingbird
import KeyholdCore

/// `/v1/webhooks`: event webhooks (contract §1.11), managed by the org's owners and admins.
struct WebhookController {
    let webhooks: WebhookService

    func register(on router: RouterGroup<KeyholdRequestContext>) {
        router.post("/v1/webhooks") { request, context in
            let caller = try context.requireCaller()
            let body = try await RequestBody.decode(CreateWebhookRequest.self, from: request)
            let (webhook, secret) = try await webhooks.create(
                url: body.url, events: body.events, description: body.description, secret: body.secret, by: caller)
            return try JSONResponse.make(WebhookResponse(webhook, secret: secret), status: .created)
        }
        router.get("/v1/webhooks") { _, context in
            let caller = try context.requireCaller()
            return try JSONResponse.make(WebhookListResponse(webhooks: try await webhooks.list(by: caller).map { WebhookResponse($0) }))
        }
        router.get("/v1/webhooks/:webhook_id") { _, context in
            let caller = try context.requireCaller()
            return try JSONResponse.make(WebhookResponse(try await webhooks.get(try Self.id(context), by: caller)))
        }
        router.patch("/v1/webhooks/:webhook_id") { request, context in
            let caller = try context.requireCaller()
            let id = try Self.id(context)
            let body = try await RequestBody.decode(UpdateWebhookRequest.self, from: request)
            let webhook = try await webhooks.update(
                id, url: body.url, events: body.events, isActive: body.is_active,
                description: body.description.map { .some($0) }, by: caller)
            return try JSONResponse.make(WebhookResponse(webhook))
        }
        router.delete("/v1/webhooks/:webhook_id") { _, context in
            let caller = try context.requireCaller()
            try await webhooks.delete(try Self.id(context), by: caller)
            return Response(status: .noContent)
        }
        router.get("/v1/webhooks/:webhook_id/deliveries") { _, context in
            let caller = try context.requireCaller()
            let deliveries = try await webhooks.deliveries(try Self.id(context), by: caller)
            return try JSONResponse.make(
                WebhookDeliveryListResponse(deliveries: deliveries.map(WebhookDeliveryResponse.init), count: deliveries.count))
        }
        router.post("/v1/webhooks/:webhook_id/test") { _, context in
            let caller = try context.requireCaller()
            let id = try Self.id(context)
            let deliveryID = try await webhooks.test(id, by: caller)
            return try JSONResponse.make(
                WebhookTestResponse(delivery_id: deliveryID.wire, webhook_id: id.wire, event: WebhookEvent.test.rawValue,
                    status: WebhookDeliveryStatus.pending.rawValue),
                status: .accepted)
        }
    }

    static func id(_ context: KeyholdRequestContext) throws -> UUID {
        try context.uuidParameter("webhook_id", notFound: WebhookService.notFound)
    }
}

struct CreateWebhookRequest: Decodable {
    let url: String
    let events: [String]
    let description: String?
    let secret: String?
}

struct UpdateWebhookRequest: Decodable {
    let url: String?
    let events: [String]?
    let is_active: Bool?
    let description: String?
}

/// `WebhookResponse`; `secret` only in the answer to its creation.
struct WebhookResponse: Encodable {
    let id: String
    let url: String
    let events: [String]
    let is_active: Bool
    let description: String?
    let secret: String?
    let created_at: Timestamp
    let updated_at: Timestamp

    init(_ webhook: Webhook, secret: String? = nil) {
        id = webhook.id.wire
        url = webhook.url
        events = webhook.events
        is_active = webhook.isActive
        description = webhook.description
        self.secret = secret
        created_at = webhook.createdAt
        updated_at = webhook.updatedAt
    }

    enum CodingKeys: String, CodingKey { case id, url, events, is_active, description, secret, created_at, updated_at }

    /// `description` is `null` when there is none; `secret` is present only in the answer to the creation.
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(url, forKey: .url)
        try container.encode(events, forKey: .events)
        try container.encode(is_active, forKey: .is_active)
        try container.encode(description, forKey: .description)
        try container.encodeIfPresent(secret, forKey: .secret)
        try container.encode(created_at, forKey: .created_at)
        try container.encode(updated_at, forKey: .updated_at)
    }
}

struct WebhookListResponse: Encodable {
    let webhooks: [WebhookResponse]
}

struct WebhookDeliveryResponse: Encodable {
    let id: String
    let webhook_id: String
    let event: String
    let status: String
    let attempts: Int
    let last_status_code: Int?
    let last_error: String?
    let created_at: Timestamp
    let delivered_at: Timestamp?
    let next_attempt_at: Timestamp?

    init(_ delivery: WebhookDelivery) {
        id = delivery.id.wire
        webhook_id = delivery.webhookID.wire
        event = delivery.event
        status = delivery.status.rawValue
        attempts = delivery.attempts
        last_status_code = delivery.lastStatusCode
        last_error = delivery.lastError
        created_at = delivery.createdAt
        delivered_at = delivery.deliveredAt
        next_attempt_at = delivery.status == .pending ? delivery.nextAttemptAt : nil
    }

    enum CodingKeys: String, CodingKey {
        case id, webhook_id, event, status, attempts, last_status_code, last_error, created_at, delivered_at
        case next_attempt_at
    }

    /// Every field, `null` included: a receiver's operator reads `last_error` and `delivered_at` whether set or not.
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(webhook_id, forKey: .webhook_id)
        try container.encode(event, forKey: .event)
        try container.encode(status, forKey: .status)
        try container.encode(attempts, forKey: .attempts)
        try container.encode(last_status_code, forKey: .last_status_code)
        try container.encode(last_error, forKey: .last_error)
        try container.encode(created_at, forKey: .created_at)
        try container.encode(delivered_at, forKey: .delivered_at)
        try container.encode(next_attempt_at, forKey: .next_attempt_at)
    }
}

struct WebhookDeliveryListResponse: Encodable {
    let deliveries: [WebhookDeliveryResponse]
    let count: Int
}

struct WebhookTestResponse: Encodable {
    let delivery_id: String
    let webhook_id: String
    let event: String
    let status: String
}
