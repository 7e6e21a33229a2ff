"""A DynamoDB table keyed as the run table is (run_id, epoch), for tests of moto's own behaviour."""


def run_keyed_table(resource, name: str = "t"):
    """Create, under moto, a table named `name` with the run table's key: hash `run_id` (S), range `epoch` (N)."""
    return resource.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[
            {"AttributeName": "run_id", "KeyType": "HASH"},
            {"AttributeName": "epoch", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "run_id", "AttributeType": "S"},
            {"AttributeName": "epoch", "AttributeType": "N"},
        ],
    )
