use serde_json::{json, Value};

use super::*;

fn petstore() -> Value {
    let text = include_str!("../../../../tests/fixtures/openapi/petstore3.json");
    serde_json::from_str(text).expect("the Petstore fixture is JSON")
}

fn fields(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.field.as_str()).collect()
}

#[test]
fn the_petstore_offers_its_eight_gets_by_default_and_any_of_its_nineteen_on_request() {
    let document = petstore();
    let tools = operations(&document, &[]).expect("the Petstore becomes tools");
    assert_eq!(tools.len(), 8);
    assert!(tools.iter().all(|t| t.method == "GET"));

    let get_pet = tools
        .iter()
        .find(|t| t.tool == "getPetById")
        .expect("getPetById");
    assert_eq!(get_pet.path, "/pet/{petId}");
    assert!(get_pet
        .description
        .starts_with("GET /pet/{petId}: Find pet by ID"));
    assert_eq!(get_pet.input_schema["required"], json!(["petId"]));
    assert_eq!(
        get_pet.input_schema["properties"]["petId"]["type"],
        "integer"
    );
    assert_eq!(
        get_pet.parameters,
        vec![ApiParameter {
            name: "petId".into(),
            location: ParameterLocation::Path,
            required: true
        }]
    );

    // Every operation can be asked for, by operationId or by method and path; those
    // taking a JSON body get it, with its schema's references inlined.
    let everything: Vec<String> = [
        "addPet",
        "updatePet",
        "findPetsByStatus",
        "findPetsByTags",
        "getPetById",
        "updatePetWithForm",
        "deletePet",
        "getInventory",
        "placeOrder",
        "getOrderById",
        "deleteOrder",
        "createUser",
        "createUsersWithListInput",
        "loginUser",
        "logoutUser",
        "getUserByName",
        "updateUser",
        "deleteUser",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(["post /pet/{petId}/uploadImage".to_owned()])
    .collect();
    let result = operations(&document, &everything);
    // uploadFile takes application/octet-stream only, and says it is not required: it
    // becomes a tool without a body.
    let tools = result.expect("all nineteen");
    assert_eq!(tools.len(), 19);
    let add_pet = tools.iter().find(|t| t.tool == "addPet").expect("addPet");
    assert_eq!(add_pet.body.as_deref(), Some("body"));
    let body = &add_pet.input_schema["properties"]["body"];
    assert_eq!(
        body["properties"]["category"]["properties"]["name"]["type"],
        "string"
    );
    assert!(!add_pet.input_schema.to_string().contains("$ref"));
    assert_eq!(add_pet.input_schema["required"], json!(["body"]));
    let delete_pet = tools
        .iter()
        .find(|t| t.tool == "deletePet")
        .expect("deletePet");
    assert!(delete_pet
        .parameters
        .iter()
        .any(|p| p.name == "api_key" && p.location == ParameterLocation::Header));
}

#[test]
fn unknown_operations_and_broken_documents_are_refused_with_their_path() {
    let document = petstore();
    let refused = operations(
        &document,
        &[
            "getPetById".into(),
            "launchRocket".into(),
            "getPetById".into(),
        ],
    )
    .expect_err("unknown and repeated operations");
    assert_eq!(
        fields(&refused),
        ["runtime.operations[1]", "runtime.operations[2]"]
    );

    let not_openapi = operations(&json!({"swagger": "2.0"}), &[]).expect_err("Swagger 2");
    assert_eq!(fields(&not_openapi), ["runtime.document.openapi"]);

    let mut broken = petstore();
    broken["paths"]["/pet/{petId}"]["get"]["parameters"][0] =
        json!({"$ref": "#/components/parameters/Missing"});
    let refused = operations(&broken, &[]).expect_err("a dangling reference");
    assert_eq!(
        fields(&refused),
        ["runtime.document.paths./pet/{petId}.get.parameters[0]"]
    );
    assert!(
        refused[0].message.contains("points at nothing"),
        "{}",
        refused[0].message
    );

    let mut wrong_type = petstore();
    wrong_type["paths"]["/pet/{petId}"]["get"]["responses"] = json!("many");
    let refused = operations(&wrong_type, &[]).expect_err("responses that are not a map");
    assert!(
        refused[0]
            .field
            .starts_with("runtime.document.paths./pet/{petId}.get"),
        "{refused:?}"
    );
}

#[test]
fn cookies_and_bodies_that_are_not_json_cannot_become_tools() {
    let document = json!({
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/session": {"get": {"operationId": "whoami", "responses": {"200": {"description": "ok"}},
                "parameters": [{"name": "sid", "in": "cookie", "schema": {"type": "string"}}]}},
            "/upload": {"post": {"operationId": "upload", "responses": {"200": {"description": "ok"}},
                "requestBody": {"required": true, "content": {"image/png": {}}}}}
        }
    });
    let refused = operations(&document, &["whoami".into(), "upload".into()]).expect_err("both");
    assert_eq!(
        fields(&refused),
        [
            "runtime.document.paths./session.get.parameters[0]",
            "runtime.document.paths./upload.post.requestBody.content"
        ]
    );
}

#[test]
fn names_come_from_the_operation_id_or_the_method_and_path() {
    assert_eq!(
        tool_name(Some("getPetById"), "get", "/pet/{petId}"),
        "getPetById"
    );
    assert_eq!(tool_name(None, "get", "/pet/{petId}"), "get_pet_petId");
    assert_eq!(
        tool_name(Some("list pets (v2)"), "get", "/"),
        "list_pets_v2"
    );
    assert_eq!(tool_name(Some(&"x".repeat(100)), "get", "/").len(), 64);
}

#[test]
fn path_level_parameters_are_shared_and_an_operations_own_replace_them() {
    let document = json!({
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "components": {"parameters": {"Id": {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}}},
        "paths": {"/things/{id}": {
            "parameters": [{"$ref": "#/components/parameters/Id"}],
            "get": {"operationId": "getThing", "responses": {"200": {"description": "ok"}},
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}},
                               {"name": "fields", "in": "query", "schema": {"type": ["string", "null"]}}]}
        }}
    });
    let tools = operations(&document, &[]).expect("one tool");
    assert_eq!(tools[0].input_schema["properties"]["id"]["type"], "integer");
    assert_eq!(tools[0].input_schema["required"], json!(["id"]));
    assert_eq!(tools[0].parameters.len(), 2);
}

#[test]
fn paths_and_headers_that_would_reach_elsewhere_are_refused() {
    let document = |path: &str, header: &str| {
        json!({
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1"},
            "paths": {path: {"get": {"operationId": "x", "responses": {"200": {"description": "ok"}},
                "parameters": [{"name": header, "in": "header", "schema": {"type": "string"}}]}}}
        })
    };
    for path in [
        "@127.0.0.1:5432/x",
        ".attacker.example/x",
        "//other.example/x",
        "x",
    ] {
        let refused = operations(&document(path, "X-Trace"), &[]).expect_err(path);
        assert_eq!(
            fields(&refused),
            [format!("runtime.document.paths.{path}")],
            "{path}"
        );
    }
    for header in [
        "Host",
        "authorization",
        "Content-Type",
        "Proxy-Authorization",
        "Cookie",
    ] {
        let refused = operations(&document("/x", header), &[]).expect_err(header);
        assert!(
            refused[0].message.contains("cannot be a tool argument"),
            "{header}: {refused:?}"
        );
    }
    assert!(operations(&document("/x", "X-Trace"), &[]).is_ok());
    let reserved = ApiAuth::Header {
        name: "Host".into(),
        secret: "K".into(),
    };
    assert!(reserved.check_names().is_err());
}

#[test]
fn a_property_named_nullable_is_kept_and_a_punctuation_operation_id_is_named_by_its_path() {
    let document = json!({
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": {"/things": {"post": {"operationId": "...", "responses": {"200": {"description": "ok"}},
            "requestBody": {"content": {"application/json": {"schema": {"type": "object",
                "properties": {"nullable": {"type": "boolean"}}}}}}}}}
    });
    let tools = operations(&document, &["POST /things".into()]).expect("one tool");
    assert_eq!(tools[0].tool, "post_things");
    assert_eq!(
        tools[0].input_schema["properties"]["body"]["properties"]["nullable"]["type"],
        "boolean"
    );
}
