"""The bot turn as a small Python/boto3 Lambda function, for the cold path's comparison.

Fair to Python: the same round trips as answer-ingest's bot turn (the secret at init, one consistent
GetItem, one CAIC GET), boto3's clients and the HTTP pool built at init, the same CA bundle
(AWS_CA_BUNDLE), and the Lambda Runtime API driven directly with the standard library, as
Lambda's own Python runtime does. No checks beyond the caller's key, no store writes.
"""

import json
import os
import ssl
import urllib.parse
import urllib.request

import boto3
import urllib3

RUNTIME = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation"

secrets = boto3.client("secretsmanager")
dynamodb = boto3.client("dynamodb")
keys = json.loads(secrets.get_secret_value(SecretId=os.environ["HANDOVER_SECRET_ARN"])["SecretString"])
caic = urllib3.PoolManager(ssl_context=ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE")))
table = os.environ["HANDOVER_TABLE"]
base_url = os.environ["CAIC_BASE_URL"]


def bot_turn(event):
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    if headers.get("authorization") != "Bearer " + keys["CHANNEL_API_KEY"]:
        return {"statusCode": 401, "body": json.dumps({"error": "unauthorized"})}
    message = json.loads(event["body"])
    session = message["sessionId"]
    stored = dynamodb.get_item(TableName=table, Key={"pk": {"S": session}}, ConsistentRead=True)
    if "Item" in stored:
        return {"statusCode": 409, "body": json.dumps({"error": "not a bot session"})}
    query = urllib.parse.urlencode({
        "customerKey": os.environ["CAIC_CUSTOMER_KEY"],
        "projectKey": os.environ["CAIC_PROJECT_KEY"],
        "apiKey": keys["CAIC_API_KEY"],
        "culture": "en",
        "q": message["text"],
        "session": session,
    })
    reply = json.loads(caic.request("GET", base_url + "/ask?" + query).data)
    answers = [reply["data"]["answer"]]
    body = {"answers": answers, "handledBy": "bot", "sessionId": session}
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}


while True:
    with urllib.request.urlopen(RUNTIME + "/next") as invocation:
        request_id = invocation.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(invocation.read())
    result = json.dumps(bot_turn(event)).encode()
    urllib.request.urlopen(urllib.request.Request(RUNTIME + "/" + request_id + "/response", data=result, method="POST")).read()
